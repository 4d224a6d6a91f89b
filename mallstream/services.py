"""Starting, watching and stopping the parts of a hub: the Kafka-protocol broker, Mosquitto, the workers.

ClickHouse needs no start: chdb runs inside the worker process. The broker and Mosquitto are
only started if the config marks them embedded and nothing already listens on their port; what
this process started, it stops. Every part is a child process in :class:`Parts`, which says
which one exited and why (exit code, last lines of its stderr), and stops all of them, the
last started first, whenever a signal asks for it: also in the middle of start-up.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from tenacity import Retrying, retry, retry_if_result, stop_after_delay, wait_fixed

from .settings import Settings

#: Lines of a part's stderr kept to say why it exited.
TAIL_LINES = 20


class ServiceError(RuntimeError):
    """An embedded part could not be started."""


class PartExited(RuntimeError):
    """A part of the hub exited while it should have been running."""


class Stopped(Exception):
    """A signal asked the hub to stop while it was starting."""


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@retry(
    retry=retry_if_result(lambda up: not up),
    stop=stop_after_delay(20),
    wait=wait_fixed(0.1),
    retry_error_callback=lambda _: False,
)
def wait_for_port(host: str, port: int) -> bool:
    return port_open(host, port)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


class Part:
    """One process of the hub: its name for messages, how long it may take to stop, its last lines of stderr."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], stop_timeout: float, echo: bool) -> None:
        self.name, self.process, self.stop_timeout = name, process, stop_timeout
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._reader = threading.Thread(target=self._read_stderr, args=(echo,), name=f"{name} stderr", daemon=True)
        self._reader.start()

    def _read_stderr(self, echo: bool) -> None:
        """Keep the last lines (and pass each on to our stderr when ``echo``) until the part closes its stderr."""
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace")
            self.tail.append(line)
            if echo:
                sys.stderr.write(line)
                sys.stderr.flush()

    def exit_report(self) -> str:
        """Which part exited, how, and the last it wrote."""
        self._reader.join(2)  # what it wrote before exiting
        code = self.process.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        lines = "".join(self.tail).rstrip("\n") or "(nothing)"
        return f"the {self.name} (pid {self.process.pid}) {how}; its last lines on stderr:\n{textwrap.indent(lines, '  | ')}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``stop_timeout``."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(2)


class Parts:
    """The processes this command started for the hub: watched together, stopped the last started first.

    Each runs in a process group of its own, so a Ctrl-C at the terminal reaches only this process,
    which stops the workers before the brokers they commit to. Setting ``stopping`` (a signal handler
    does) ends a start-up wherever it is with :class:`Stopped`, and :meth:`watch`; leaving the
    ``with`` stops whatever was started by then.
    """

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.stopping = threading.Event()

    def start(self, name: str, command: list[str], stop_timeout: float = 30.0, echo: bool = False) -> Part:
        """Start a part; ``echo`` passes its stdout and stderr on to ours (the workers'), else they are kept quiet."""
        self._check()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=None if echo else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0,
        )
        part = Part(name, process, stop_timeout, echo)
        self.parts.append(part)
        return part

    def wait_for_port(self, part: Part, host: str, port: int, timeout: float = 20.0) -> None:
        """Until ``part`` listens on ``port``; a stop request or the part exiting ends the wait at once."""

        def listening() -> bool:
            self._check()
            return port_open(host, port)

        opened = Retrying(
            retry=retry_if_result(lambda up: not up),
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.1),
            sleep=self.stopping.wait,
            retry_error_callback=lambda _: False,
        )(listening)
        if not opened:
            raise ServiceError(f"the {part.name} did not open {host}:{port} within {timeout:g} s")

    def watch(self) -> None:
        """Until a stop is asked for (returns) or a part exits on its own (raises :class:`PartExited`)."""
        while not self.stopping.wait(0.2):
            self._raise_for_exited()

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()

    def _check(self) -> None:
        if self.stopping.is_set():
            raise Stopped
        self._raise_for_exited()

    def _raise_for_exited(self) -> None:
        for part in self.parts:
            if part.process.poll() is not None:
                raise PartExited(part.exit_report())

    def __enter__(self) -> Parts:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _noida_db() -> str:
    """The noida-db server itself, not its Python launcher, which would kill it on a signal before it saves."""
    try:
        binary = resources.files("noida_db") / "noida-db"
    except ModuleNotFoundError:
        binary = None
    if binary is None or not binary.is_file():
        raise ServiceError("noida-db is not installed (pip install noida-db)")
    return str(binary)


def start_broker(parts: Parts, settings: Settings) -> None:
    """A noida-db Kafka broker on the configured port, data kept in ``kafka.data_dir``."""
    host, port = _host_port(settings.kafka.bootstrap_servers)
    if port_open(host, port):
        return
    data_dir = settings.kafka.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [_noida_db(), "start", "--only", "kafka", "--kafka-port", str(port), "--data-dir", str(data_dir)]
    # on SIGTERM it saves its log (4 GB after a ten-minute soak) before exiting: whoever removes or reuses the
    # data directory next must find the broker gone
    parts.wait_for_port(parts.start("broker", command, stop_timeout=600), host, port)


def mosquitto_password_line(username: str, password: str, iterations: int = 101) -> str:
    """A line of a Mosquitto 2 password file (PBKDF2-SHA512, as ``mosquitto_passwd`` writes it).

    Made here rather than with ``mosquitto_passwd -b``, which would show the password in the process list.
    """
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


def start_mosquitto(parts: Parts, settings: Settings) -> None:
    """Mosquitto on the configured port, bound to the configured (loopback) address.

    With ``mqtt.username`` set, only that user with the password from ``mqtt.password_env`` may connect;
    otherwise anyone who can reach the address. TLS needs a server certificate: run your own Mosquitto
    (``mqtt.mode: external``) for that.
    """
    host, port = settings.mqtt.host, settings.mqtt.port
    if port_open(host, port):
        return
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise ServiceError("mosquitto is not installed (apt-get install mosquitto), or set mqtt.mode: off")
    if settings.mqtt.tls:
        raise ServiceError(
            "the embedded Mosquitto does not serve TLS: set mqtt.mode: external for a broker with "
            "a certificate, or tls: false"
        )
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
    parts.wait_for_port(parts.start("Mosquitto", [binary, "-c", str(conf)], stop_timeout=10), host, port)


@contextmanager
def embedded_mosquitto(settings: Settings) -> Iterator[None]:
    """Mosquitto alone, stopped on leaving the ``with``."""
    with Parts() as parts:
        start_mosquitto(parts, settings)
        yield


@contextmanager
def embedded_services(settings: Settings, parts: Parts | None = None) -> Iterator[Parts]:
    """Everything the config marks embedded, started in order (among ``parts``) and stopped in reverse."""
    with parts or Parts() as running:
        if settings.kafka.mode == "embedded":
            start_broker(running, settings)
        if settings.mqtt.mode == "embedded":
            start_mosquitto(running, settings)
        yield running
