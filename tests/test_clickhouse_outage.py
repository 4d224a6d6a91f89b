"""ClickHouse (server mode) unavailable in the middle of a replay (30 s; 10 s in CI): nothing lost, nothing doubled.

The sinks hold their batches and offsets and wait for the server; the rest of the worker goes on.
Size: MALLSTREAM_SCALE (1 in CI; `make scenario` runs it larger).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mallstream import settings as config
from mallstream.replay import wait_until_processed
from mallstream.services import port_open, wait_for_port
from tests.conftest import REPO, SCALE, WorkerProcess, free_port, write_config
from tests.expected import expected_ledger
from tests.test_pipeline import assert_matches, ledger_figures, make_day

pytestmark = [pytest.mark.pipeline, pytest.mark.heavy, pytest.mark.alone, pytest.mark.timeout(900)]

OUTAGE_S = 30 if SCALE > 1 else 10


@contextlib.contextmanager
def clickhouse_server(directory: Path, port: int) -> Iterator[subprocess.Popen]:
    """tests/chdb_http.py in a process of its own, so it can be taken away as a server crash would."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.chdb_http", str(directory), str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port("127.0.0.1", port), "the ClickHouse endpoint did not start"
        yield process
    finally:
        process.kill()
        process.wait()


def test_clickhouse_down_during_a_replay_loses_nothing_and_doubles_nothing(tmp_path, broker):
    port = free_port()
    hub_config = write_config(tmp_path, broker, clickhouse={"mode": "server", "host": "127.0.0.1", "port": port})
    day = make_day(hub_config, tmp_path, int(2_500 * SCALE), member_share="0.8")
    expected = expected_ledger(day)
    data = tmp_path / "clickhouse-server"
    worker = WorkerProcess(hub_config, tmp_path / "worker.log")
    replay = None
    try:
        with clickhouse_server(data, port):
            worker.start()
            replay = subprocess.Popen(
                [sys.executable, "-m", "mallstream.cli", "-c", str(hub_config), "replay", str(day)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(3)
        assert not port_open("127.0.0.1", port)
        time.sleep(OUTAGE_S)
        assert worker.process.poll() is None, "the worker gave up while ClickHouse was away"
        with clickhouse_server(data, port):
            assert replay.wait(timeout=300) == 0
            assert wait_until_processed(config.load(hub_config), timeout=600, progress=False)
            # doubled rows would double members' points; lost ones would lower them
            assert_matches(ledger_figures(hub_config), expected)
    finally:
        if replay is not None:
            replay.kill()
        worker.stop()
