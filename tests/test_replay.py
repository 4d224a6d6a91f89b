"""`mallstream replay` against the real broker: keys, pacing and dead letters, without a worker."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer

from mallstream.streams import topics
from tests.conftest import cli, write_config

pytestmark = pytest.mark.pipeline

EVENTS = [
    {"type": "pos_transaction", "txn_id": "s1", "store_id": "S101", "workstation_id": "T", "seq": 1,
     "ts": "2026-11-21T10:00:00+08:00", "business_day": "2026-11-21", "kind": "sale", "total": 10},
    {"type": "pos_transaction", "txn_id": "r1", "store_id": "S101", "workstation_id": "T", "seq": 2,
     "ts": "2026-11-21T10:00:01+08:00", "business_day": "2026-11-21", "kind": "return", "total": 10,
     "original_txn_id": "s1"},
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
