"""The retention keeper against a real broker and real workers: it trims, and never what is still needed.

Two short days of receipts with ``kafka.keep_hours: 0``, the worker SIGKILLed between them. A
consumer group of the hub is made to lag on purpose (the separate VIP worker's routes lane,
stopped half-way through ``pos.by_member``): its unread records must stay and /stats/ must say
it holds retention back. The restarted worker must recover its stores and end on ground truth,
while the low watermarks of the topics and of the lanes' changelogs have moved (the stores
keep local files up to the offsets trimmed).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from mallstream import settings as config
from mallstream.replay import consumer_groups, replay, wait_until_processed
from mallstream.streams import topics
from tests.conftest import SCALE, WorkerProcess, cli, write_config
from tests.expected import expected_ledger
from tests.test_pipeline import assert_matches, ledger_figures

pytestmark = [pytest.mark.pipeline, pytest.mark.heavy]

LAGGING = topics.lane_group(topics.vip_app_id("mallstream"), "routes")


def two_days(config_path: Path, tmp_path: Path, count: int) -> tuple[Path, Path, Path]:
    """A simulated day's receipts as two days: the first half, then the second moved to the next day.

    Returns on the second day of sales of the first (most without a card) find their member and
    sale only through the worker's tables: a state lost across the SIGKILL shows in the ledger.
    Also the pair as one file, for ground truth.
    """
    whole = tmp_path / "whole.jsonl"
    cli(config_path, "simulate", "pos", "--count", str(count), "--member-share", "0.8", "-o", str(whole))
    lines = whole.read_text().splitlines(keepends=True)
    day = json.loads(lines[0])["business_day"]
    next_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    first, second = lines[: len(lines) // 2], [line.replace(day, next_day) for line in lines[len(lines) // 2 :]]
    first_sales = {json.loads(line)["txn_id"] for line in first}
    assert any(json.loads(line).get("original_txn_id") in first_sales for line in second)
    paths = tmp_path / "day1.jsonl", tmp_path / "day2.jsonl", tmp_path / "both.jsonl"
    for path, part in zip(paths, (first, second, first + second), strict=False):
        path.write_text("".join(part))
    return paths


def offsets(broker: str, names: list[str]) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Low and high watermarks of every partition of ``names``."""
    consumer = KafkaConsumer(bootstrap_servers=broker)
    try:
        tps = [TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())]
        return consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    finally:
        consumer.close()


def stop_half_way(broker: str, group: str, topic: str) -> dict[TopicPartition, int]:
    """Commit ``group`` half-way through ``topic``, as a worker stopped there would have."""
    _, ends = offsets(broker, [topic])
    halves = {tp: end // 2 for tp, end in ends.items()}
    consumer = KafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in halves.items()})
    finally:
        consumer.close()
    return halves


def retention(worker: WorkerProcess) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}/stats/", headers=worker.headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["retention"]


def next_rounds(worker: WorkerProcess, rounds: int = 2, timeout: float = 60) -> dict:
    """The keeper's report once ``rounds`` more rounds have ended (so one began after this call)."""
    seen, report = 0, retention(worker)
    deadline = time.monotonic() + timeout
    while seen < rounds:
        assert time.monotonic() < deadline, "the retention keeper ran no round"
        time.sleep(0.3)
        latest = retention(worker)
        if latest != report:
            seen, report = seen + 1, latest
    return report


def read_from(broker: str, starts: dict[TopicPartition, int]) -> int:
    """How many records can still be read from ``starts`` on."""
    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        return sum(1 for _ in consumer)
    finally:
        consumer.close()


def test_the_keeper_trims_only_what_no_group_and_no_restarted_worker_needs(tmp_path, broker):
    hub_config = write_config(
        tmp_path,
        broker,
        kafka={"keep_hours": 0, "trim": "on", "trim_every_seconds": 1},
        worker={"vip_worker": {"separate": True}},
    )
    settings = config.load(hub_config)
    # the VIP worker is not started here: wait for the main worker's groups only
    main_groups = {g: names for g, names in consumer_groups(settings.worker).items() if "-vip" not in g}
    day1, day2, both = two_days(hub_config, tmp_path, int(600 * SCALE))
    stores = ("cards", "sale_owners", "footfall_states")  # the days are receipts only: no gate event
    changelogs = [topics.changelog_topic("mallstream", table) for table in stores]

    worker = WorkerProcess(hub_config, tmp_path / "worker.log").start()
    try:
        replay(settings, day1, progress=False)
        assert wait_until_processed(settings, timeout=300, progress=False, groups=main_groups)
        held = stop_half_way(broker, LAGGING, topics.POS_BY_MEMBER.name)
        report = next_rounds(worker)
        assert report["held_back_by"][LAGGING] > 0, report
        worker.kill()
        worker.start()
        replay(settings, day2, progress=False)
        assert wait_until_processed(settings, timeout=300, progress=False, groups=main_groups)
        report = next_rounds(worker)
        assert_matches(ledger_figures(hub_config), expected_ledger(both))
    finally:
        worker.stop()

    lows, ends = offsets(broker, [topics.POS_TRANSACTIONS.name, topics.POS_BY_MEMBER.name, *changelogs])
    # read by every group of the hub: all gone (keep_hours 0)
    receipts = [tp for tp in lows if tp.topic == topics.POS_TRANSACTIONS.name]
    assert all(lows[tp] == ends[tp] for tp in receipts) and sum(ends[tp] for tp in receipts) > 0
    # the lagging group's unread records are all there; what every group had read went
    assert {tp: lows[tp] for tp in held} == held
    assert read_from(broker, held) == sum(ends[tp] - held[tp] for tp in held)
    assert report["held_back_by"][LAGGING] == sum(ends[tp] - held[tp] for tp in held)

    def trimmed(table: str) -> int:
        return sum(lows[tp] for tp in lows if tp.topic == topics.changelog_topic("mallstream", table))

    # the lanes keep their stores in local files: their changelogs are trimmed up to what the files hold
    assert {table: trimmed(table) > 0 for table in stores} == dict.fromkeys(stores, True)
    assert report["changelogs_kept"] is None
