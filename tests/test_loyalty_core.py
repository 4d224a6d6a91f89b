"""The points rule as a pure function: no broker, no faust."""

import datetime as dt
from decimal import Decimal

import msgspec

from mallstream.streams.core.loyalty import MemberState, PointsRules, apply_transaction, earned_points
from mallstream.streams.records import PosTransaction

RULES = PointsRules(Decimal(1), {"FOOD": Decimal("0.5")})
TS = dt.datetime(2026, 11, 21, 12, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def receipt(txn_id: str, total: str, kind: str = "sale", store: str = "S1", original: str | None = None) -> PosTransaction:
    return PosTransaction(
        txn_id=txn_id, store_id=store, workstation_id="T1", seq=1, ts=TS, business_day=TS.date(),
        kind=kind, total=Decimal(total), member_id="M1", original_txn_id=original,
    )


def test_points_are_the_floor_of_amount_times_rate_exactly():
    assert earned_points(Decimal("99.99"), Decimal(1)) == 99
    assert earned_points(Decimal("0.29"), Decimal(100)) == 29  # 0.29 * 100 is 28.999999999999996 in floats
    assert earned_points(Decimal("33.33"), Decimal("0.5")) == 16


def test_a_sale_earns_points_once_per_txn_id():
    state = MemberState(member_id="M1")
    state, entries = apply_transaction(state, receipt("t1", "120.50"), RULES, "mall")
    assert state.points == 120 and [(e.delta, e.balance_after, e.replayed) for e in entries] == [(120, 120, False)]
    again, replayed = apply_transaction(state, receipt("t1", "120.50"), RULES, "mall")
    assert again is state and again.points == 120
    assert [(e.entry_id, e.delta, e.balance_after, e.replayed) for e in replayed] == [("t1:points", 120, 120, True)]


def test_store_rates_apply():
    state, _ = apply_transaction(MemberState(member_id="M1"), receipt("t1", "45.00", store="FOOD"), RULES, "mall")
    assert state.points == 22


def test_a_return_takes_back_at_most_what_the_sale_earned():
    state, _ = apply_transaction(MemberState(member_id="M1"), receipt("t1", "50.00"), RULES, "mall")
    state, entries = apply_transaction(state, receipt("t2", "30.00", "return", original="t1"), RULES, "mall")
    assert state.points == 20 and entries[0].delta == -30 and entries[0].cause == "pos_return"
    state, entries = apply_transaction(state, receipt("t3", "80.00", "return", original="t1"), RULES, "mall")
    assert entries[0].delta == -50


def test_a_void_reverses_the_original_exactly_and_an_unknown_one_changes_nothing():
    state, _ = apply_transaction(MemberState(member_id="M1"), receipt("t1", "77.70"), RULES, "mall")
    state, entries = apply_transaction(state, receipt("t2", "77.70", "void", original="t1"), RULES, "mall")
    assert state.points == 0 and entries[0].delta == -77
    state, entries = apply_transaction(state, receipt("t3", "10.00", "void", original="nope"), RULES, "mall")
    assert state.points == 0 and entries[0].delta == 0


def test_the_input_state_is_not_modified():
    before = MemberState(member_id="M1")
    after, _ = apply_transaction(before, receipt("t1", "10.00"), RULES, "mall")
    assert before.points == 0 and before.receipts == {} and after.points == 10


def test_purchase_dates_track_first_and_last_day():
    state = MemberState(member_id="M1")
    for i, day in enumerate(["2026-11-21", "2026-11-01", "2026-11-30"]):
        txn = msgspec.structs.replace(receipt(f"t{i}", "1.00"), business_day=dt.date.fromisoformat(day))
        state, _ = apply_transaction(state, txn, RULES, "m")
    assert (state.first_purchase, state.last_purchase) == ("2026-11-01", "2026-11-30")
