"""Starting and stopping the embedded parts: the Kafka-protocol broker and Mosquitto.

ClickHouse needs no start: chdb runs inside the worker process. Each part is
only started if the config marks it embedded and nothing already listens on its
port; what this process started, it stops.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
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
    try:
        yield
    finally:
        subprocess.run([_noida_db(), "down", "--data-dir", str(data_dir)], capture_output=True)


@contextmanager
def embedded_mosquitto(settings: Settings) -> Iterator[None]:
    """Mosquitto on the configured port, bound to loopback."""
    host, port = settings.mqtt.host, settings.mqtt.port
    if port_open(host, port):
        yield
        return
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise ServiceError("mosquitto is not installed (apt-get install mosquitto), or set mqtt.mode: off")
    conf = settings.kafka.data_dir.resolve().parent / "mosquitto.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f"listener {port} {host}\nallow_anonymous true\npersistence false\n")
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
