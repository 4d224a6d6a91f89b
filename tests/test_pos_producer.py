"""The POS integrators' producer on the real broker: valid receipts keyed by their sale, invalid ones refused."""

import json

import pytest
from kafka import KafkaConsumer

from mallstream.devices.pos_producer import PosProducer
from mallstream.streams.records import InvalidEvent
from mallstream.streams.topics import ensure_topics

pytestmark = pytest.mark.pipeline

SALE = {
    "txn_id": "T-1",
    "store_id": "S101",
    "workstation_id": "W1",
    "seq": 1,
    "ts": "2026-11-21T10:00:00+08:00",
    "business_day": "2026-11-21",
    "kind": "sale",
    "total": "12.30",
    "member_id": "M1",
}


def test_valid_receipts_go_out_keyed_by_their_sale_and_invalid_ones_never_leave(broker):
    ensure_topics(broker, 4, 1, "mallstream")
    with PosProducer(broker) as hub:
        hub.send(SALE)
        hub.send({**SALE, "txn_id": "T-2", "kind": "return", "original_txn_id": "T-1", "total": "2.30"})
        with pytest.raises(InvalidEvent, match="at most 2 decimals"):
            hub.send({**SALE, "txn_id": "T-3", "total": "1.005"})
        with pytest.raises(InvalidEvent, match="needs original_txn_id"):
            hub.send({**SALE, "txn_id": "T-4", "kind": "void"})
    consumer = KafkaConsumer(
        "pos.transactions", bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    messages = list(consumer)
    consumer.close()
    assert [(m.key, json.loads(m.value)["txn_id"]) for m in messages] == [(b"T-1", "T-1"), (b"T-1", "T-2")]
    assert b'"total":12.30' in messages[0].value  # the exact decimal on the wire


def test_import_poslog_publishes_receipts_for_the_mall_and_dead_letters_the_rest(broker, tmp_path):
    from tests.conftest import cli, write_config
    from tests.test_devices_anpr_poslog import DOC_SALE, SIGN_ON, poslog, transaction

    ensure_topics(broker, 4, 1, "mallstream")
    config = write_config(tmp_path, broker)
    document = tmp_path / "day.xml"
    document.write_bytes(
        poslog(
            transaction(160, SIGN_ON),
            transaction(161, DOC_SALE),
            transaction(163, "<RetailTransaction><Total>x</Total></RetailTransaction>"),
        )
    )
    result = cli(config, "import-poslog", str(document))
    assert "published 1 receipts, 1 transactions to dead letters" in result.stdout
    assert "sequence numbers 162..162 missing" in result.stdout
    receipts = list(
        KafkaConsumer(
            "pos.transactions", bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=3000
        )
    )
    assert [json.loads(m.value)["mall_id"] for m in receipts] == ["sh-xujiahui"]
    letters = list(
        KafkaConsumer("deadletters", bootstrap_servers=broker, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    )
    assert len(letters) == 1 and json.loads(letters[0].value)["source"].startswith("poslog:")
