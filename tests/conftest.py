"""Shared fixtures: a real Kafka-protocol broker (noida-db), real chdb, real worker processes."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from mallstream.auth import command_headers
from mallstream.services import wait_for_port
from mallstream.settings import ClickHouse, load
from mallstream.sinks.clickhouse import TableSink
from mallstream.sinks.tables import LEDGER_TABLE
from tests.chdb_http import serve_chdb

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config" / "mall.example.yaml"
#: The rules simulated days are replayed against; tests/expected.py knows them independently.
TEST_RULES = REPO / "tests" / "rules" / "day.yaml"
NOIDA = str(Path(sys.executable).with_name("noida-db"))

#: Size of scenario tests: 1 in CI, larger through `make scenario`.
SCALE = float(os.environ.get("MALLSTREAM_SCALE", "1"))


#: Ports for the servers tests start: below the ephemeral range (32768-60999 on Linux), where
#: outgoing connections take theirs, in a slice of their own per test process (pytest-xdist). A port
#: the kernel handed out as free was taken by another process's connection before the worker bound it.
_PORT_SLICE = 2000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_ports = itertools.cycle(range(20000 + _PORT_SLICE * _WORKER, 20000 + _PORT_SLICE * (_WORKER + 1)))


def free_port() -> int:
    """A port nothing listens on now, from this test process's own slice."""
    for port in _ports:
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable: the ports cycle")


@contextlib.contextmanager
def running_broker(data_dir: Path) -> Iterator[str]:
    """A fresh noida-db broker on a free port with its data in ``data_dir``, down again on exit."""
    port = free_port()
    subprocess.run(
        [NOIDA, "up", "--only", "kafka", "--kafka-port", str(port), "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
    )
    try:
        assert wait_for_port("127.0.0.1", port), "broker did not start"
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([NOIDA, "down", "--data-dir", str(data_dir)], capture_output=True, check=False)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A fresh broker for one test, so topics and offsets start empty."""
    with running_broker(tmp_path / "broker") as bootstrap:
        yield bootstrap


def write_config(tmp_path: Path, bootstrap: str, **sections: dict) -> Path:
    """The example config with this test's broker, ports and directories."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    # an external noida-db: it answers empty fetches at once, so the worker paces them as in embedded mode
    data["kafka"].update(mode="external", bootstrap_servers=bootstrap, partitions=4, broker_long_polls=False)
    data["rules"]["file"] = str(TEST_RULES)
    data["clickhouse"].update(path=str(tmp_path / "clickhouse"), http_port=free_port())
    data["mqtt"]["mode"] = "off"
    data["worker"].update(state_dir=str(tmp_path / "worker"), web_port=free_port())
    data["worker"]["sink"].update(flush_seconds=0.5)
    # workers of one hub share the keys (a second worker's config passes the first's auth and privacy)
    data.setdefault("auth", {}).update(keys_file=str(tmp_path / "auth" / "keys.json"))
    data.setdefault("privacy", {}).update(hash_key_file=str(tmp_path / "auth" / "hash.key"))
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = tmp_path / "mall.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def api_headers(config: Path) -> dict[str, str]:
    """What the `mallstream` command sends a worker of this config: the local admin key the worker made."""
    return command_headers(load(config))


class WorkerProcess:
    """`mallstream worker [--vip]` in its own process, so tests can SIGKILL it."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None, vip: bool = False) -> None:
        self.config, self.log, self.env, self.vip = config, log, env or {}, vip
        self.process: subprocess.Popen | None = None
        worker = yaml.safe_load(config.read_text())["worker"]
        self.port = worker["vip_worker"]["web_port"] if vip else worker["web_port"]

    def start(self, failpoint: str | None = None) -> WorkerProcess:
        env = {**os.environ, **self.env}
        env.pop("MALLSTREAM_FAILPOINT", None)
        if failpoint:
            env["MALLSTREAM_FAILPOINT"] = failpoint
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mallstream.cli",
                    "-c",
                    str(self.config),
                    "worker",
                    *(["--vip"] if self.vip else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.config.parent,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None and not failpoint:
                raise RuntimeError(f"worker exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            if wait_for_port("127.0.0.1", self.port):
                return self
        raise RuntimeError("worker did not open its web port")

    @property
    def headers(self) -> dict[str, str]:
        """The local admin key, as the `mallstream` command on the worker's machine sends it."""
        return api_headers(self.config)

    def kill(self) -> bool:
        """SIGKILL the worker; whether it was alive to be killed (one that had exited already is not)."""
        if self.process is None or self.process.poll() is not None:
            return False
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait() == -signal.SIGKILL

    def __enter__(self) -> WorkerProcess:
        return self if self.process else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def hub_config(tmp_path: Path, broker: str) -> Path:
    return write_config(tmp_path, broker)


@pytest.fixture
def worker(hub_config: Path, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(hub_config, tmp_path / "worker.log")
    yield process
    process.stop()


def cli(config: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `mallstream` command as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "mallstream.cli", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"mallstream {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A ClickHouse HTTP endpoint over chdb on a free port; yields the config a hub would use in server mode."""
    port = free_port()
    with serve_chdb(tmp_path_factory.mktemp("server") / "db", port):
        yield ClickHouse(mode="server", host="127.0.0.1", port=port)


@contextlib.contextmanager
def running_mosquitto(arguments: Callable[[int], list[str]]) -> Iterator[int]:
    """Mosquitto (installed by scripts/setup.sh) on a free port, started with ``arguments(port)``; stopped on exit.

    A port found free can be taken by another process before Mosquitto binds it; then
    Mosquitto exits while the port still answers, so a dead broker means another try.
    """
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen(
            ["/usr/sbin/mosquitto", *arguments(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert wait_for_port("127.0.0.1", port)
        time.sleep(0.2)
        if process.poll() is None:
            break
    else:
        pytest.fail("Mosquitto did not start on any of 5 free ports")
    try:
        yield port
    finally:
        process.terminate()
        process.wait()


@pytest.fixture
def mosquitto() -> Iterator[int]:
    """A Mosquitto broker of its own on a free port."""
    with running_mosquitto(lambda port: ["-p", str(port)]) as port:
        yield port


@pytest.fixture
def sink(warehouse):
    """A ledger sink on empty tables; ``warehouse`` is the requesting module's (embedded or server)."""
    warehouse.command("TRUNCATE TABLE {db}.ledger_entries")
    warehouse.command("TRUNCATE TABLE {db}.points_daily")
    return TableSink(warehouse, LEDGER_TABLE.name, LEDGER_TABLE.columns)


@pytest.fixture
def browser():
    """Headless Debian Chromium (scripts/setup.sh installs it) driven by playwright; its own browsers are not used."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()
