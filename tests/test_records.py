from decimal import Decimal

import pytest

from mallstream.streams.records import FootfallTick, InvalidEvent, PosTransaction, decode, decode_input, encode

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
        (('+08:00', ''), "UTC offset"),
        (('"seq":1', '"seq":-1'), "seq"),
        (('"kind":"sale"', '"kind":"refund"'), "kind"),
        (('"txn_id":"t1",', ''), "txn_id"),
    ],
)
def test_invalid_receipts_are_refused_with_a_reason(change, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode(PosTransaction, SALE.replace(*change))


def test_a_receipt_and_its_returns_share_a_routing_key():
    sale = decode(PosTransaction, SALE)
    ret = decode(
        PosTransaction,
        SALE.replace('"txn_id":"t1"', '"txn_id":"t2"').replace('"kind":"sale"', '"kind":"return","original_txn_id":"t1"'),
    )
    assert sale.routing_key == ret.routing_key == "t1"


def test_garbage_is_an_invalid_event_not_a_crash():
    for payload in (b"", b"{", b"[1,2]", b'{"type":"nope"}', b"\xff\xfe"):
        with pytest.raises(InvalidEvent):
            decode_input(payload)


def test_the_same_bad_input_makes_the_same_dead_letter_wherever_it_was_seen():
    from mallstream.streams.records import dead_letter

    first = dead_letter("pos.transactions:0:17", "missing txn_id", b"{}")
    again = dead_letter("pos.transactions:3:99", "missing txn_id", b"{}")
    other = dead_letter("pos.transactions:0:18", "missing txn_id", b'{"x":1}')
    assert first.dead_letter_id == again.dead_letter_id != other.dead_letter_id
    assert dead_letter("rfid.reads:0:1", "bad", b"\xff").payload == "\\xff"
