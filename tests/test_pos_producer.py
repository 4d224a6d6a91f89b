"""The POS integrators' producer on the real broker: valid receipts keyed by their sale, invalid ones refused."""

import json

import pytest
from kafka import KafkaConsumer

from mallstream.devices.pos_producer import PosProducer
from mallstream.streams.records import InvalidEvent
from mallstream.streams.topics import ensure_topics

pytestmark = pytest.mark.pipeline

SALE = {"txn_id": "T-1", "store_id": "S101", "workstation_id": "W1", "seq": 1, "ts": "2026-11-21T10:00:00+08:00",
        "business_day": "2026-11-21", "kind": "sale", "total": "12.30", "member_id": "M1"}


def test_valid_receipts_go_out_keyed_by_their_sale_and_invalid_ones_never_leave(broker):
    ensure_topics(broker, 4, 1, "mallstream")
    with PosProducer(broker) as hub:
        hub.send(SALE)
        hub.send({**SALE, "txn_id": "T-2", "kind": "return", "original_txn_id": "T-1", "total": "2.30"})
        with pytest.raises(InvalidEvent, match="at most 2 decimals"):
            hub.send({**SALE, "txn_id": "T-3", "total": "1.005"})
        with pytest.raises(InvalidEvent, match="needs original_txn_id"):
            hub.send({**SALE, "txn_id": "T-4", "kind": "void"})
    consumer = KafkaConsumer("pos.transactions", bootstrap_servers=broker, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    messages = list(consumer)
    consumer.close()
    assert [(m.key, json.loads(m.value)["txn_id"]) for m in messages] == [(b"T-1", "T-1"), (b"T-1", "T-2")]
    assert b'"total":12.30' in messages[0].value  # the exact decimal on the wire
