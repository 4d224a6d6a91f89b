"""Starting and stopping the embedded parts: the Kafka-protocol broker and Mosquitto.

ClickHouse needs no start: chdb runs inside the worker process. Each part is
only started if the config marks it embedded and nothing already listens on its
port; what this process started, it stops.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from collections.abc import Iterator
from pathlib import Path

from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from .settings import Settings


class ServiceError(RuntimeError):
    """An embedded part could not be started."""


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@retry(retry=retry_if_result(lambda up: not up), stop=stop_after_delay(20), wait=wait_fixed(0.1), retry_error_callback=lambda _: False)
def wait_for_port(host: str, port: int) -> bool:
    return port_open(host, port)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def _noida_db() -> str:
    found = shutil.which("noida-db") or str(Path(sys.executable).with_name("noida-db"))
    if not Path(found).exists():
        raise ServiceError("noida-db is not installed (pip install noida-db)")
    return found


@contextmanager
def embedded_broker(settings: Settings) -> Iterator[None]:
    """A noida-db Kafka broker on the configured port, data kept in ``kafka.data_dir``."""
    host, port = _host_port(settings.kafka.bootstrap_servers)
    if port_open(host, port):
        yield
        return
    data_dir = settings.kafka.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [_noida_db(), "up", "--only", "kafka", "--kafka-port", str(port), "--data-dir", str(data_dir)]
    subprocess.run(command, check=True, capture_output=True)
    if not wait_for_port(host, port):
        raise ServiceError(f"the embedded broker did not open {host}:{port}; see {data_dir}/noida.log")
    pid = json.loads((data_dir / "noida.control.json").read_text())["pid"]
    try:
        yield
    finally:
        subprocess.run([_noida_db(), "down", "--data-dir", str(data_dir)], capture_output=True)
        # `down` can return while a big log is still being saved (a 4 GB kafka.json after a ten-minute soak):
        # whoever removes or reuses the data directory next must find the broker gone
        _wait_until_gone(pid, timeout=600)


def _wait_until_gone(pid: int, timeout: float) -> None:
    """Until process ``pid`` (not our child) has exited or is a zombie, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = Path(f"/proc/{pid}/status")
    while time.monotonic() < deadline:
        try:
            if "\nState:\tZ" in status.read_text():
                return
        except FileNotFoundError:  # gone and reaped
            return
        time.sleep(0.1)


def mosquitto_password_line(username: str, password: str, iterations: int = 101) -> str:
    """A line of a Mosquitto 2 password file (PBKDF2-SHA512, as ``mosquitto_passwd`` writes it).

    Made here rather than with ``mosquitto_passwd -b``, which would show the password in the process list.
    """
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


@contextmanager
def embedded_mosquitto(settings: Settings) -> Iterator[None]:
    """Mosquitto on the configured port, bound to the configured (loopback) address.

    With ``mqtt.username`` set, only that user with the password from ``mqtt.password_env`` may connect;
    otherwise anyone who can reach the address. TLS needs a server certificate: run your own Mosquitto
    (``mqtt.mode: external``) for that.
    """
    host, port = settings.mqtt.host, settings.mqtt.port
    if port_open(host, port):
        yield
        return
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise ServiceError("mosquitto is not installed (apt-get install mosquitto), or set mqtt.mode: off")
    if settings.mqtt.tls:
        raise ServiceError("the embedded Mosquitto does not serve TLS: set mqtt.mode: external for a broker with "
                           "a certificate, or tls: false")
    conf = settings.kafka.data_dir.resolve().parent / "mosquitto.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    access = "allow_anonymous true\n"
    if settings.mqtt.username:
        password = settings.mqtt.password
        if not password:
            raise ServiceError(f"mqtt.username is set but ${settings.mqtt.password_env} holds no password")
        passwords = conf.with_name("mosquitto.passwd")
        passwords.touch(mode=0o600)
        passwords.write_text(mosquitto_password_line(settings.mqtt.username, password))
        # started as root, Mosquitto would become user mosquitto, who cannot read files in a private state directory
        access = f"allow_anonymous false\npassword_file {passwords}\nuser {getpass.getuser()}\n"
    conf.write_text(f"listener {port} {host}\n{access}persistence false\n")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_port(host, port):
            raise ServiceError(f"mosquitto did not open {host}:{port}")
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def embedded_services(settings: Settings) -> Iterator[None]:
    """Everything the config marks embedded, started in order and stopped in reverse."""
    with ExitStack() as stack:
        if settings.kafka.mode == "embedded":
            stack.enter_context(embedded_broker(settings))
        if settings.mqtt.mode == "embedded":
            stack.enter_context(embedded_mosquitto(settings))
        yield
