"""`mallstream replay` against the real broker: keys, pacing and dead letters, without a worker."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from mallstream.streams import topics
from mallstream.streams.topics import ensure_topics
from tests.conftest import WorkerProcess, cli, free_port, running_broker, write_config

pytestmark = pytest.mark.pipeline

EVENTS = [
    {
        "type": "pos_transaction",
        "txn_id": "s1",
        "store_id": "S101",
        "workstation_id": "T",
        "seq": 1,
        "ts": "2026-11-21T10:00:00+08:00",
        "business_day": "2026-11-21",
        "kind": "sale",
        "total": 10,
    },
    {
        "type": "pos_transaction",
        "txn_id": "r1",
        "store_id": "S101",
        "workstation_id": "T",
        "seq": 2,
        "ts": "2026-11-21T10:00:01+08:00",
        "business_day": "2026-11-21",
        "kind": "return",
        "total": 10,
        "original_txn_id": "s1",
    },
    {"type": "footfall_tick", "counter_id": "C-north", "ts": "2026-11-21T10:00:02+08:00", "in": 3, "out": 1},
]


def read_all(broker: str, topic: str, expected: int) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        messages = []
        for message in consumer:
            messages.append(message)
            if len(messages) == expected:
                break
        return messages
    finally:
        consumer.close()


def test_replay_keys_events_for_their_partitions_paces_them_and_dead_letters_bad_lines(broker, tmp_path):
    from mallstream.streams.topics import ensure_topics

    config = write_config(tmp_path, broker)
    ensure_topics(broker, 4, 1, "mallstream")
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(EVENTS[0]), "{broken", json.dumps(EVENTS[1]), json.dumps(EVENTS[2])]) + "\n")

    started = time.monotonic()
    result = cli(config, "replay", str(path), "--speed", "2")
    assert time.monotonic() - started >= 1.0  # 2 s of event time at twice real speed
    assert "sent 3 events" in result.stdout and "1 malformed lines" in result.stdout

    receipts = read_all(broker, topics.POS_TRANSACTIONS.name, 2)
    assert [m.key for m in receipts] == [b"s1", b"s1"]  # the return travels with its sale
    assert receipts[0].partition == receipts[1].partition
    assert [m.key for m in read_all(broker, topics.FOOTFALL_TICKS.name, 1)] == [b"C-north"]
    [letter] = read_all(broker, topics.DEAD_LETTERS.name, 1)
    body = json.loads(letter.value)
    assert body["payload"] == "{broken" and body["source"].endswith("events.jsonl:2") and body["reason"]


def ticks(path: Path, count: int) -> Path:
    """``count`` footfall ticks a second apart, stamped a year in the past."""
    start = dt.datetime(2025, 11, 21, 10, tzinfo=dt.UTC)
    path.write_text(
        "".join(
            json.dumps(
                {
                    "type": "footfall_tick",
                    "counter_id": "C-north",
                    "in": 1,
                    "out": 0,
                    "ts": (start + dt.timedelta(seconds=i)).isoformat(),
                }
            )
            + "\n"
            for i in range(count)
        )
    )
    return path


def test_replay_to_a_broker_nobody_runs_gives_up_after_the_unreachable_timeout(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path, address, kafka={"unreachable_timeout_s": 3})
    started = time.monotonic()
    result = cli(config, "replay", str(ticks(tmp_path / "events.jsonl", 10)), check=False, timeout=120)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 15, result.stderr  # 3 s, and the start of Python
    assert f"the Kafka broker at {address} did not answer for 3 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_stops_sending_to_a_broker_stopped_under_it(tmp_path):
    # the broker went away mid-replay: kafka-python went on with "retrying (inf attempts left)" until killed
    with running_broker(tmp_path / "broker") as bootstrap:
        config = write_config(tmp_path, bootstrap, kafka={"unreachable_timeout_s": 3})
        ensure_topics(bootstrap, 4, 1, "mallstream")
        # 60 s of events at 4 times their pace: 15 s of replay, of which the broker sees the first 2
        replay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mallstream.cli",
                "-c",
                str(config),
                "replay",
                str(ticks(tmp_path / "events.jsonl", 60)),
                "--speed",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        time.sleep(2)
    stopped = time.monotonic()
    try:
        _, stderr = replay.communicate(timeout=60)
    finally:
        replay.kill()
    assert replay.returncode == 1, stderr
    assert time.monotonic() - stopped < 10, stderr
    assert f"the Kafka broker at {bootstrap} did not answer for 3 s" in stderr


def test_replay_wait_shows_the_messages_the_worker_processed_going_forward(broker, tmp_path):
    config = write_config(tmp_path, broker)
    ensure_topics(broker, 4, 1, "mallstream")
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mallstream.cli",
            "-c",
            str(config),
            "replay",
            str(ticks(tmp_path / "events.jsonl", 200)),
            "--wait",
            "--timeout",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(replay.stderr.read()))
    reader.start()
    try:
        time.sleep(5)  # sent and waiting, with no worker yet: nothing processed
        with WorkerProcess(config, tmp_path / "worker.log"):
            replay.wait(timeout=120)
    finally:
        replay.kill()
        reader.join()
    assert replay.returncode == 0, errors
    done = [(int(n), int(total)) for n, total in re.findall(r"processing:[^|]*\|[^|]*\| (\d+)/(\d+)", errors[0])]
    assert done and "processing: 0msg" not in errors[0], errors  # the bar has a count, not just "0msg"
    assert done[0][0] == 0 < done[0][1]
    assert done[-1][0] == done[-1][1] >= 2 * 200  # each tick is read by the router and by its agent
    assert len({n for n, _ in done}) > 2, done  # and it got there step by step
