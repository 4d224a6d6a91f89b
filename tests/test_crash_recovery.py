"""SIGKILL the worker in the middle of a replay, again and again: nothing lost, nothing counted twice.

Size: MALLSTREAM_SCALE (1 in CI; `make scenario` runs it larger). CI runs the RocksDB store,
the default; `make scenario` runs the in-memory store as well (each run takes over a minute,
most of it worker restarts, and the suite must stay under 20 minutes).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from mallstream import settings as config
from mallstream.replay import wait_until_processed
from tests.conftest import SCALE, WorkerProcess
from tests.expected import expected_ledger
from tests.test_pipeline import assert_matches, ledger_figures, make_day

pytestmark = [pytest.mark.pipeline, pytest.mark.heavy]


STORES = ["rocksdb", "memory"] if SCALE > 1 else ["rocksdb"]


@pytest.mark.parametrize("store", STORES)
def test_sigkill_during_replay_loses_nothing_and_double_counts_nothing(tmp_path, broker, store):
    from tests.conftest import write_config

    hub_config = write_config(tmp_path, broker, worker={"store": store})
    day = make_day(hub_config, tmp_path, int(2_500 * SCALE), member_share="0.8")
    expected = expected_ledger(day)
    worker = WorkerProcess(hub_config, tmp_path / "worker.log").start()
    replay = subprocess.Popen(
        [sys.executable, "-m", "mallstream.cli", "-c", str(hub_config), "replay", str(day)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    rng = random.Random(11)
    kills = 0
    try:
        for _ in range(3):  # at random moments
            time.sleep(rng.uniform(1.5, 4.0))
            worker.kill()
            kills += 1
            worker.start()
        # between a ClickHouse insert and the offset commit that would have followed it
        for passes in (1, 3):
            worker.kill()
            worker.start(failpoint=f"sink.after_insert:{passes}")
            worker.process.wait(timeout=120)
            assert worker.process.returncode == -9, "the failpoint did not fire"
            kills += 1
            worker.start()
        assert replay.wait(timeout=300) == 0
        assert wait_until_processed(config.load(hub_config), timeout=600, progress=False)
    finally:
        replay.kill()
        worker.stop()
    assert kills == 5
    assert_matches(ledger_figures(hub_config), expected)
