"""SIGKILL the worker five times while a simulated mall day goes through it: nothing lost, nothing counted twice.

The day has all four inputs (receipts, RFID reads, counter ticks, gate events). It is
replayed in segments; the worker is killed three times at a random moment of a segment (the
last once all it was sent is processed and committed, when state not yet saved would be lost), once
by a failpoint after an insert that stored ledger entries (before its offsets were committed)
and once after the malls lane's footfall and parking states reached their changelogs (before
its offsets were committed). Every
output table must then equal, ids and figures (wall-clock fields left out), the same day
through a worker never killed, and the ledger, visitors, staff passes and parking stays the
day's ground truth.

The same day through two workers, one of them killed and restarted twice (its partitions move
to the other and back), must give the same tables; two workers share ClickHouse in server mode.

Size: MALLSTREAM_SCALE (1 in CI; `make scenario` runs it larger). The two-worker test runs
only in `make scenario`.
"""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mallstream.privacy import Pseudonym
from mallstream.replay import wait_until_processed
from mallstream.settings import load
from mallstream.simulators.mallday import GroundTruth, MallDay, record
from mallstream.simulators.members import vip_members
from mallstream.streams.master_data import write_master_data
from tests.conftest import SCALE, WorkerProcess, free_port, running_broker
from tests.expected import expected_ledger
from tests.outputs import outputs
from tests.test_footfall_pipeline import footfall_config, hourly_truth, replay_until_closed, sql
from tests.test_pipeline import assert_matches, ledger_figures

pytestmark = [pytest.mark.pipeline, pytest.mark.heavy, pytest.mark.timeout(900)]

DAY = MallDay(visitors=int(1200 * SCALE), staff=20, staff_badges=True, vip_share=0.05, seed=23)
#: Segments of the recording: three for random kills, one per failpoint, and the rest of the day.
SEGMENTS = 6


def hub_config(tmp_path: Path, bootstrap: str, hash_key: Path) -> Path:
    """The footfall test's mall (a counter and a badge reader everywhere), with the day's VIP members.

    Hubs compared share ``hash_key``, so plates and tags are stored as the same hashes.
    """
    config = footfall_config(tmp_path, bootstrap)
    members = tmp_path / "members.csv"
    write_master_data(members, vip_members(load(config).malls[0], DAY))
    data = yaml.safe_load(config.read_text())
    data["members"]["source"] = str(members)
    data["privacy"]["hash_key_file"] = str(hash_key)
    config.write_text(yaml.safe_dump(data))
    return config


def segments(recording: Path, count: int) -> list[Path]:
    """The recording cut into ``count`` consecutive files of about equal length, in its order."""
    lines = recording.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // count)
    parts = []
    for index in range(count):
        part = recording.with_name(f"{recording.stem}.{index}.jsonl")
        part.write_bytes(b"".join(lines[index * size : (index + 1) * size]))
        parts.append(part)
    return parts


def replay(config: Path, recording: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mallstream.cli", "-c", str(config), "replay", str(recording)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def recorded_day(directory: Path, config: Path) -> tuple[Path, GroundTruth]:
    settings = load(config)
    recording = directory / "day.jsonl"
    truth = record(settings, settings.malls[0].id, DAY, recording, progress=False)
    return recording, truth


@pytest.fixture(scope="module")
def hash_key(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("privacy") / "hash.key"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, hash_key) -> dict:
    """The day through a worker that is never killed: what every output table should hold."""
    directory = tmp_path_factory.mktemp("reference")
    with running_broker(directory / "broker") as bootstrap:
        config = hub_config(directory, bootstrap, hash_key)
        recording, _ = recorded_day(directory, config)
        with WorkerProcess(config, directory / "worker.log"):
            replay_until_closed(config, recording, timeout=300)
    return outputs(config)


def assert_truth(config: Path, recording: Path, truth: GroundTruth) -> None:
    """The figures the day's ground truth (or an independent computation from the recording) fixes."""
    settings = load(config)
    mall = settings.malls[0]
    assert_matches(ledger_figures(config), expected_ledger(recording))
    hourly = sql(
        config,
        """
        SELECT key, formatDateTime(toTimeZone(hour, 'Asia/Shanghai'), '%H:%i') AS h,
               sum(visitors_in) AS i, sum(visitors_out) AS o
        FROM {db}.visitors_hourly WHERE level = 'entrance' GROUP BY key, h HAVING i != 0 OR o != 0
        SETTINGS output_format_json_quote_64bit_integers = 0""",
    )
    assert {(row["key"], row["h"]): (row["i"], row["o"]) for row in hourly} == hourly_truth(
        truth, [entrance.id for entrance in mall.entrances]
    )

    def millis(iso: str) -> int:
        return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)

    stays = sql(
        config,
        "SELECT plate_hash, car_park_id, toUnixTimestamp64Milli(entry) AS entry, "
        "toUnixTimestamp64Milli(exit) AS exit FROM {db}.parking_stays",
    )
    hashed = Pseudonym.of(settings)
    assert sorted((s["plate_hash"], s["car_park_id"], int(s["entry"]), int(s["exit"])) for s in stays) == sorted(
        (hashed(t["plate"]), t["car_park"], millis(t["entry"]), millis(t["exit"])) for t in truth.parking_stays
    )


def assert_same_outputs(found: dict, reference: dict) -> None:
    """Each table holds the rows the never-killed worker's holds: none lost, none extra (a few shown of each)."""
    differing = {}
    for table, rows in reference.items():
        lost, extra = sorted(set(rows) - set(found[table])), sorted(set(found[table]) - set(rows))
        if lost or extra or len(rows) != len(found[table]):
            differing[table] = {"lost": lost[:3], "extra": extra[:3], "rows": (len(found[table]), len(rows))}
    assert differing == {}
    assert all(reference.values()), "every table has rows"


def test_five_sigkills_during_a_mall_day_lose_nothing_and_count_nothing_twice(tmp_path, broker, reference, hash_key):
    config = hub_config(tmp_path, broker, hash_key)
    recording, truth = recorded_day(tmp_path, config)
    parts = segments(recording, SEGMENTS)
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    rng = random.Random(11)
    kills = 0
    try:
        for index, part in enumerate(parts[:3]):  # at random moments: twice while busy, once just after
            sending = replay(config, part)
            if index == 2:  # everything sent so far processed and its offsets committed
                assert sending.wait(timeout=120) == 0
                assert wait_until_processed(load(config), timeout=120, progress=False)
            time.sleep(rng.uniform(0.5, 3.0) if index < 2 else rng.uniform(0.0, 1.0))
            kills += worker.kill()
            assert sending.wait(timeout=120) == 0
            worker.start()
        # after an insert that stored ledger entries, before its offsets were committed; then after the malls
        # lane's footfall and parking states reached their changelogs, before its offsets were committed
        for failpoint, part in (
            ("sink.after_insert.ledger_entries:1", parts[3]),
            ("lane.mallstream-malls.after_flush:2", parts[4]),
        ):
            worker.stop()
            worker.start(failpoint=failpoint)
            assert replay(config, part).wait(timeout=120) == 0
            worker.process.wait(timeout=120)
            assert worker.process.returncode == -9, f"{failpoint} did not fire"
            kills += 1
            worker.start()
        replay_until_closed(config, parts[5], timeout=300)
    finally:
        worker.stop()
    assert kills == 5
    assert_truth(config, recording, truth)
    assert_same_outputs(outputs(config), reference)


def second_worker(config: Path) -> Path:
    """The same hub's config for another worker: its own web port, state directory and group member id."""
    data = yaml.safe_load(config.read_text())
    directory = config.parent / "second"
    directory.mkdir()
    data["worker"].update(web_port=free_port(), state_dir=str(directory / "worker"))
    data["worker"]["vip_worker"]["web_port"] = free_port()
    path = directory / "mall.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.skipif(
    SCALE == 1, reason="`make scenario`: beside the rest of CI, its load made footfall clocks run early"
)
def test_two_workers_one_killed_and_restarted_twice_lose_nothing_and_count_nothing_twice(
    tmp_path, broker, server, reference, hash_key
):
    """Partitions move to the surviving worker at each kill and back at each restart (ClickHouse in server mode)."""
    config = hub_config(tmp_path, broker, hash_key)
    data = yaml.safe_load(config.read_text())
    data["clickhouse"].update(mode="server", host=server.host, port=server.port)
    data["worker"]["session_timeout"] = 6.0  # the least the broker takes
    config.write_text(yaml.safe_dump(data))
    recording, truth = recorded_day(tmp_path, config)
    parts = segments(recording, SEGMENTS)
    first = WorkerProcess(config, tmp_path / "first.log").start()
    second = WorkerProcess(second_worker(config), tmp_path / "second.log").start()
    rng = random.Random(5)
    kills = 0
    try:
        for index, part in enumerate(parts[:4]):
            sending = replay(config, part)
            time.sleep(rng.uniform(1.0, 3.0))
            if index % 2 == 0:
                kills += second.kill()  # its partitions go to the first worker once its session times out
            else:
                second.start()  # and come back to it
            assert sending.wait(timeout=120) == 0
            time.sleep(8)  # past the session timeout: the partitions have moved
        for part in parts[4:-1]:
            assert replay(config, part).wait(timeout=120) == 0
        replay_until_closed(config, parts[-1], timeout=300)
        assert first.process.poll() is None, "the worker that was never killed died"
    finally:
        second.stop()
        first.stop()
    assert kills == 2
    assert_truth(config, recording, truth)
    assert_same_outputs(outputs(config), reference)
