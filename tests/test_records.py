import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mallstream.streams import topics
from mallstream.streams.records import (
    FootfallTick,
    InvalidEvent,
    PosTransaction,
    dead_letter,
    decode,
    decode_input,
    encode,
)

SALE = (
    '{"type":"pos_transaction","txn_id":"t1","store_id":"S101","workstation_id":"S101-T1","seq":1,'
    '"ts":"2026-11-21T10:00:00+08:00","business_day":"2026-11-21","kind":"sale","total":0.30,'
    '"lines":[{"sku":"a","qty":1,"unit_price":0.1,"amount":0.10},{"sku":"b","qty":2,"unit_price":"0.10","amount":0.2}],'
    '"tenders":[{"type":"cash","amount":0.3}],"member_id":"M1"}'
)


def test_money_is_parsed_exactly_and_survives_a_round_trip():
    txn = decode(PosTransaction, SALE)
    assert txn.total == Decimal("0.30") and isinstance(txn.total, Decimal)
    assert sum(line.amount for line in txn.lines) == Decimal("0.3")  # 0.1 + 0.2 with floats is 0.30000000000000004
    assert decode(PosTransaction, encode(txn)) == txn


def test_input_events_are_chosen_by_type_and_footfall_uses_in_and_out():
    tick = decode_input('{"type":"footfall_tick","counter_id":"C1","ts":"2026-11-21T10:00:00Z","in":4,"out":1}')
    assert isinstance(tick, FootfallTick) and (tick.count_in, tick.count_out) == (4, 1)
    assert b'"in":4' in encode(tick)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (('"total":0.30', '"total":0.301'), "at most 2 decimals"),
        (('"total":0.30', '"total":0.40'), "sum of line amounts"),
        (('"kind":"sale"', '"kind":"return"'), "needs original_txn_id"),
        (("+08:00", ""), "UTC offset"),
        (('"seq":1', '"seq":-1'), "seq"),
        (('"kind":"sale"', '"kind":"refund"'), "kind"),
        (('"txn_id":"t1",', ""), "txn_id"),
    ],
)
def test_invalid_receipts_are_refused_with_a_reason(change, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode(PosTransaction, SALE.replace(*change))


def test_a_receipt_and_its_returns_share_a_routing_key():
    sale = decode(PosTransaction, SALE)
    ret = decode(
        PosTransaction,
        SALE.replace('"txn_id":"t1"', '"txn_id":"t2"').replace(
            '"kind":"sale"', '"kind":"return","original_txn_id":"t1"'
        ),
    )
    assert sale.routing_key == ret.routing_key == "t1"


def test_garbage_is_an_invalid_event_not_a_crash():
    for payload in (b"", b"{", b"[1,2]", b'{"type":"nope"}', b"\xff\xfe"):
        with pytest.raises(InvalidEvent):
            decode_input(payload)


def test_the_same_bad_input_makes_the_same_dead_letter_wherever_it_was_seen():
    first = dead_letter("pos.transactions:0:17", "missing txn_id", b"{}")
    again = dead_letter("pos.transactions:3:99", "missing txn_id", b"{}")
    other = dead_letter("pos.transactions:0:18", "missing txn_id", b'{"x":1}')
    assert first.dead_letter_id == again.dead_letter_id != other.dead_letter_id
    assert dead_letter("rfid.reads:0:1", "bad", b"\xff").payload == "\\xff"


# -- fuzzing every input path: whatever arrives is a record or an InvalidEvent with a reason ----------------

VALID_INPUTS = [
    json.loads(SALE),
    {
        "type": "rfid_read",
        "reader_id": "R-north",
        "antenna": 1,
        "epc": "E2801160000000000000ABCD",
        "rssi_dbm": -50.0,
        "ts": "2026-11-21T10:00:00+08:00",
    },
    {"type": "footfall_tick", "counter_id": "C1", "ts": "2026-11-21T10:00:00Z", "in": 4, "out": 1, "interval_s": 60},
    {
        "type": "parking_event",
        "gate_id": "G1",
        "car_park_id": "P1",
        "plate": "粤B12345",
        "direction": "entry",
        "ts": "2026-11-21T10:00:00+08:00",
    },
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_inputs(draw: st.DrawFn) -> bytes:
    """A valid input event with some fields dropped or replaced by any JSON value, or plain bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    event = dict(draw(st.sampled_from(VALID_INPUTS)))
    for key in draw(st.lists(st.sampled_from(sorted(event)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del event[key]
        else:
            event[key] = draw(json_values)
    text = json.dumps(event, ensure_ascii=draw(st.booleans()))
    return text.encode()[: draw(st.integers(len(text) - 5, len(text) * 4))]


@settings(max_examples=400, deadline=None)
@given(payload=mutated_inputs())
def test_any_input_payload_is_a_valid_record_or_an_invalid_event_with_a_reason(payload: bytes) -> None:
    for spec in topics.INPUT_TOPICS.values():
        try:
            record = decode(spec.record, payload)
        except InvalidEvent as exc:
            letter = dead_letter(f"{spec.name}:0:0", str(exc), payload)
            assert letter.reason and letter.source == f"{spec.name}:0:0"
        else:
            assert decode(spec.record, encode(record)) == record  # what passed travels on unchanged
