"""The pure loyalty engine: every rule kind with its edge cases, holds, operations."""

import datetime as dt
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mallstream.settings import ConfigError
from mallstream.streams.core.accounts import MemberCard
from mallstream.streams.core.engine import enrol, evaluate
from mallstream.streams.core.holds import AuthRequest, authorise
from mallstream.streams.core.operations import (
    adjust_points,
    birthday_gift,
    change_status,
    expire_vouchers,
    expiring,
    group_grant,
    manual_rebate,
    run_rebates,
)
from mallstream.streams.core.parking_fees import StayAtExit, fee_for, settle_at_exit, settle_parking
from mallstream.streams.core.rules import parse_rules
from mallstream.streams.records import PosLine, PosTransaction, Tender

CST = dt.timezone(dt.timedelta(hours=8))
DAY = dt.date(2026, 11, 18)  # a Wednesday
NOON = dt.datetime(2026, 11, 18, 12, tzinfo=CST)
VOUCHERS = """
voucher_campaigns:
  - {id: cos, trigger: {spend: 300, scope: {categories: [cosmetics]}}, reward: 100,
     usage_scope: {categories: [cosmetics]}, validity: {days: 1}}
"""


def rules(text: str = "", number: int = 1):
    return parse_rules("tiers: [standard, silver, gold]\n" + text, "rules.yaml", number)


def line(amount: str, category: str = "cosmetics", sku: str = "SKU", brand: str = "") -> PosLine:
    return PosLine(
        sku=sku, qty=Decimal(1), unit_price=Decimal(amount), amount=Decimal(amount), category=category, brand=brand
    )


def sale(
    txn_id: str, *lines: PosLine, tenders=(), ts=NOON, day=None, kind="sale", original=None, store="S1", total=None
):
    return PosTransaction(
        txn_id=txn_id,
        store_id=store,
        workstation_id="T1",
        seq=1,
        ts=ts,
        business_day=day or ts.date(),
        kind=kind,
        total=Decimal(total) if total is not None else sum((line.amount for line in lines), Decimal(0)),
        member_id="M1",
        original_txn_id=original,
        lines=list(lines),
        tenders=[Tender(type=t, amount=Decimal(a), reference=r) for t, a, r in tenders],
    )


def run(book, *txns, card=None, now=NOON):
    effects = []
    for txn in txns:
        card, out = evaluate(card, txn, book, now)
        effects += out
    return card, effects


def of(effects, kind):
    return [e for e in effects if e.kind == kind]


# --- earning -------------------------------------------------------------------------------------


def test_each_rule_is_floored_once_over_the_receipt_and_multipliers_add():
    book = rules(
        "earning: {rate: 1, multipliers: [{id: cos2, factor: 2, scope: {categories: [cosmetics]}}, {id: all1.5, factor: 1.5}]}"
    )
    card, effects = run(book, sale("t1", line("10.60"), line("10.60", "food")))
    # base 21.20 -> 21; cos2 adds 10.60 -> 10; all1.5 adds 0.5 x 21.20 = 10.60 -> 10
    assert [(e.rule_id, e.delta) for e in of(effects, "points_earned")] == [
        ("earn-base", 21),
        ("cos2", 10),
        ("all1.5", 10),
    ]
    assert card.points == 41 and all(e.rule_version == book.tag for e in effects)


def test_excluded_lines_and_voucher_paid_share_earn_nothing():
    book = rules("earning: {exclude: [{categories: [tobacco]}]}\n" + VOUCHERS)
    card, _ = run(book, sale("t1", line("300.00")))
    voucher_id = next(iter(card.vouchers))
    card, effects = run(
        book,
        sale(
            "t2",
            line("100.00"),
            line("50.00", "tobacco"),
            tenders=[("voucher", "60.00", voucher_id), ("cash", "90.00", "")],
        ),
        card=card,
    )
    # eligible 100.00, paid 90 of 150 without voucher: 100 x 0.6 = 60
    assert of(effects, "points_earned")[0].delta == 60


@pytest.mark.parametrize(("day", "bonus"), [(dt.date(2026, 11, 30), 10), (dt.date(2026, 12, 1), 0)])
def test_a_multiplier_window_includes_its_last_business_day_exactly(day, bonus):
    book = rules("earning: {multipliers: [{id: nov, factor: 2, ends: 2026-11-30}]}")
    _, effects = run(book, sale("t1", line("10.00"), ts=dt.datetime.combine(day, dt.time(23, 59), CST)))
    assert sum(e.delta for e in of(effects, "points_earned")) == 10 + bonus


def test_birthday_week_is_the_iso_week_of_the_birthday_on_the_receipt_business_day():
    book = rules("earning: {multipliers: [{id: bday, factor: 2, birthday_week: true}]}")
    card = msgspec.structs.replace(enrol("M1", book), birthday=dt.date(1990, 11, 22))  # Sunday 2026-11-22
    monday, next_monday = dt.datetime(2026, 11, 16, 9, tzinfo=CST), dt.datetime(2026, 11, 23, 9, tzinfo=CST)
    _, inside = run(book, sale("t1", line("10.00"), ts=monday), card=card)
    _, outside = run(book, sale("t2", line("10.00"), ts=next_monday), card=card)
    assert sum(e.delta for e in of(inside, "points_earned")) == 20
    assert sum(e.delta for e in of(outside, "points_earned")) == 10


def test_tier_and_store_multipliers():
    book = rules(
        "earning: {multipliers: [{id: gold, factor: 3, tiers: [gold]}, {id: food, factor: 0.5, scope: {stores: [FOOD]}}]}"
    )
    gold = msgspec.structs.replace(enrol("M1", book), tier="gold")
    _, effects = run(book, sale("t1", line("10.00"), store="FOOD"), card=gold)
    assert [(e.rule_id, e.delta) for e in of(effects, "points_earned")] == [
        ("earn-base", 10),
        ("gold", 20),
        ("food", -5),
    ]


def test_caps_trim_bonuses_first_and_count_per_business_day_even_for_a_late_offline_receipt():
    book = rules("earning: {cap_per_transaction: 150, cap_per_day: 200, multipliers: [{id: x2, factor: 2}]}")
    card, first = run(book, sale("t1", line("100.00")))  # 100 + 100 -> capped at 150
    assert [(e.rule_id, e.delta) for e in of(first, "points_earned")] == [("earn-base", 100), ("x2", 50)]
    yesterday = NOON - dt.timedelta(days=1)
    card, late = run(book, sale("t2", line("100.00"), ts=yesterday), card=card)  # uploaded today, earned yesterday
    card, same_day = run(book, sale("t3", line("100.00")), card=card)
    assert sum(e.delta for e in of(late, "points_earned")) == 150  # its own day has room
    assert sum(e.delta for e in of(same_day, "points_earned")) == 50  # today's cap: 200 - 150
    assert card.points == 350


# --- vouchers ------------------------------------------------------------------------------------


def test_a_day_window_campaign_adds_up_one_business_day_and_a_late_receipt_counts_on_its_own_day():
    book = rules(
        """voucher_campaigns: [{id: day300, trigger: {spend: 300, within: business_day}, reward: 50, validity: {days: 7}}]"""
    )
    yesterday = NOON - dt.timedelta(days=1)
    _card, effects = run(
        book, sale("a", line("200.00")), sale("late", line("150.00"), ts=yesterday), sale("b", line("100.00"))
    )
    (voucher,) = [e.voucher for e in of(effects, "voucher_issued")]
    assert voucher.source_txn_id == "b" and voucher.contributors == {"a": 20000, "b": 10000} and voucher.basis == 30000


def test_repeat_and_limits_per_member_and_per_day():
    book = rules("""voucher_campaigns: [{id: rep, trigger: {spend: 100, repeat: true}, reward: 10, validity: {days: 7},
                   limit_per_member: 3, limit_per_member_per_day: 2}]""")
    card, first = run(book, sale("t1", line("350.00")))
    assert len(of(first, "voucher_issued")) == 2  # 3 due, 2 a day
    card, same_day = run(book, sale("t2", line("100.00")), card=card)
    card, next_day = run(book, sale("t3", line("500.00"), ts=NOON + dt.timedelta(days=1)), card=card)
    assert len(of(same_day, "voucher_issued")) == 0 and len(of(next_day, "voucher_issued")) == 1
    assert card.issued_per_campaign == {"rep": 3}


@pytest.mark.parametrize(("offset", "accepted"), [(dt.timedelta(seconds=-1), True), (dt.timedelta(0), False)])
def test_a_voucher_pays_until_the_second_before_valid_to(offset, accepted):
    book = rules(VOUCHERS)
    card, _ = run(book, sale("t1", line("300.00")))
    voucher = next(iter(card.vouchers.values()))
    pay = sale("t2", line("50.00"), tenders=[("voucher", "50.00", voucher.voucher_id)], ts=voucher.valid_to + offset)
    after, effects = run(book, pay, card=card)
    assert bool(of(effects, "voucher_redeemed")) is accepted
    assert after.vouchers[voucher.voucher_id].remaining == (5000 if accepted else 10000)
    if not accepted:
        assert "expired at" in of(effects, "voucher_rejected")[0].reason


def test_a_voucher_cannot_pay_more_than_its_in_scope_lines_or_its_balance_or_belong_to_another():
    book = rules(VOUCHERS)
    card, _ = run(book, sale("t1", line("300.00")))
    voucher_id = next(iter(card.vouchers))
    mixed = sale(
        "t2",
        line("40.00"),
        line("60.00", "clothing"),
        tenders=[("voucher", "50.00", voucher_id), ("cash", "50.00", "")],
    )
    _, effects = run(book, mixed, card=card)
    assert "4000 cents in scope, 5000 offered" in of(effects, "voucher_rejected")[0].reason
    stranger = sale("t3", line("40.00"), tenders=[("voucher", "40.00", "someone-else")])
    _, effects = run(book, stranger, card=card)
    assert "does not belong to this member" in of(effects, "voucher_rejected")[0].reason


# --- returns and voids ---------------------------------------------------------------------------


def test_a_return_without_lines_is_spread_in_proportion_and_rounds_half_up():
    book = rules(VOUCHERS)
    card, _ = run(book, sale("t1", line("300.00"), line("33.00", "food")))  # 333 points, 100 voucher on 300 cosmetics
    card, effects = run(book, sale("r1", total="111.00", kind="return", original="t1"), card=card)
    # a third of the receipt: 333 x 1/3 = 111 points; cosmetics share 300 x 111/333 = 100 -> voucher 100 x 100/300 = 33.33 -> 33
    assert of(effects, "points_reversed")[0].delta == -111
    assert of(effects, "voucher_clawed")[0].delta == -3333
    card, effects = run(book, sale("r2", total="222.00", kind="return", original="t1"), card=card)
    assert card.points == 0 and next(iter(card.vouchers.values())).remaining == 0  # the rest, exactly


def test_returns_never_reverse_more_than_the_sale_earned():
    book = rules()
    card, _ = run(book, sale("t1", line("50.00")))
    card, effects = run(
        book,
        sale("r1", line("50.00"), kind="return", original="t1"),
        sale("r2", line("50.00"), kind="return", original="t1"),
        card=card,
    )
    assert [e.delta for e in of(effects, "points_reversed")] == [-50] and card.points == 0


def test_a_return_of_an_unknown_sale_reverses_base_rate_points_and_is_flagged():
    card, effects = run(rules(), sale("r1", line("20.00"), kind="return", original="elsewhere"))
    assert of(effects, "points_reversed")[0].delta == -20 and "unknown" in of(effects, "flagged")[0].reason
    assert card.points == -20


def test_a_void_cancels_the_sale_and_gives_back_what_the_card_paid():
    book = rules(VOUCHERS)
    card, _ = run(book, sale("t1", line("300.00")))
    card = msgspec.structs.replace(card, stored_value=5000)
    voucher_id = next(iter(card.vouchers))
    before = card
    paid = sale(
        "t2",
        line("100.00"),
        tenders=[("voucher", "30.00", voucher_id), ("stored_value", "50.00", ""), ("cash", "20.00", "")],
    )
    card, _ = run(book, paid, card=card)
    card, effects = run(book, sale("v2", line("100.00"), kind="void", original="t2"), card=card)
    assert (card.points, card.stored_value, card.vouchers[voucher_id].remaining) == (before.points, 5000, 10000)
    assert {e.kind for e in effects} == {"points_reversed", "voucher_restored", "stored_value_credit"}
    _, again = run(book, sale("v3", line("100.00"), kind="void", original="t2"), card=card)
    assert "was voided" in of(again, "rejected")[0].reason


# --- refusals, idempotency, enrolment ------------------------------------------------------------


@pytest.mark.parametrize(
    ("txn", "reason"),
    [
        (sale("t1", line("10.00"), tenders=[("cash", "9.00", "")]), "tenders sum to 9.00, total is 10.00"),
        (sale("t1", line("-10.00")), "negative amount"),
        (sale("t1", line("10.00"), total="11.00"), "lines sum to 10.00"),
        (sale("t1", line("10.00"), kind="return"), "must name one"),
    ],
)
def test_malformed_receipts_are_rejected_whole_with_a_reason(txn, reason):
    card, effects = run(rules(), txn)
    assert reason in of(effects, "rejected")[0].reason and card.points == 0
    assert [e.kind for e in effects] == ["enrolled", "rejected"]


@pytest.mark.parametrize("status", ["lost", "frozen", "recalled"])
def test_refused_cards_earn_and_pay_nothing(status):
    book = rules()
    card = msgspec.structs.replace(enrol("M1", book), status=status, stored_value=10000)
    after, effects = run(book, sale("t1", line("10.00"), tenders=[("stored_value", "10.00", "")]), card=card)
    assert of(effects, "rejected")[0].reason == f"card is {status}"
    assert (after.points, after.stored_value) == (0, 10000)


def test_a_receipt_seen_again_changes_nothing_and_replays_its_effects():
    book = rules(VOUCHERS)
    card, first = run(book, sale("t1", line("300.00")))
    again, replayed = run(book, sale("t1", line("300.00")), card=card)
    assert again is card
    assert [msgspec.structs.replace(e, replayed=False) for e in replayed] == first
    assert all(e.replayed for e in replayed)


def test_an_unknown_member_is_enrolled_at_the_base_tier_and_missing_attributes_are_flagged():
    card, effects = run(rules(VOUCHERS), sale("t1", line("300.00", category="")))
    assert card.tier == "standard" and effects[0].kind == "enrolled"
    assert card.points == 300 and card.vouchers == {}  # the base rate needs no attribute; the campaign could not match
    assert "SKU lacks category" in of(effects, "flagged")[0].reason


def test_effects_carry_the_rule_version_in_force_when_rules_change_mid_replay():
    card, before = run(rules("earning: {rate: 1}", number=1), sale("t1", line("10.00")))
    card, after = run(rules("earning: {rate: 2}", number=2), sale("t2", line("10.00")), card=card)
    assert before[-1].rule_version.startswith("1-") and after[-1].rule_version.startswith("2-")
    assert card.points == 30


def test_the_card_round_trips_through_msgpack():
    card, _ = run(rules(VOUCHERS), sale("t1", line("300.00")))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(card), type=MemberCard) == card


# --- tier discounts and rebates ------------------------------------------------------------------


def test_tier_discounts_round_half_up_and_an_amount_never_exceeds_the_scope():
    book = rules("""tier_discounts: [{id: pct, tiers: [gold], percent: 5, exclude: [{categories: [tobacco]}]},
                   {id: flat, tiers: [gold], amount: 20, scope: {categories: [food]}}]""")
    gold = msgspec.structs.replace(enrol("M1", book), tier="gold")
    _, effects = run(book, sale("t1", line("10.10"), line("15.00", "food"), line("99.00", "tobacco")), card=gold)
    # 5% of 25.10 = 1.255 -> 1.26; the food amount 20 is capped at the 15.00 in scope
    assert [(e.rule_id, e.amount) for e in of(effects, "tier_discount")] == [("pct", 126), ("flat", 1500)]


def test_semi_automatic_rebate_on_swipe_by_formula_and_points_payment_rounds_up():
    book = rules("""rebates:
  - {id: swipe, mode: semi_automatic, stores: [S1], min_points: 1000, points_step: 1000, formula: "floor(points / 1000) * (10 + 2 * tier_rank)"}
  - {id: pay, mode: points_payment, ratio: 0.03}""")
    card = msgspec.structs.replace(enrol("M1", book), points=1500, tier="silver")
    card, effects = run(book, sale("t1", line("600.00")), card=card)  # 2100 points: 2000 convert, 2 x 12 = 24.00
    assert [(e.kind, e.delta) for e in effects if e.rule_id == "swipe"] == [("points_spent", -2000), ("rebate", 2400)]
    card, effects = run(book, sale("t2", line("0.10"), tenders=[("points", "0.10", "")], store="S2"), card=card)
    assert of(effects, "points_spent")[0].delta == -4  # 0.10 / 0.03 = 3.33 -> 4 points


def test_rebate_strategies_convert_whole_blocks_and_round_money_down():
    book = rules("""rebates: [{id: desk, mode: manual, fixed: 50, per_points: 5000},
                   {id: auto, mode: automatic, ratio: 0.013, points_step: 100, run_on: ["12-31"]}]""")
    card = msgspec.structs.replace(enrol("M1", book), points=12345)
    desk, effects = manual_rebate(card, book, NOON, "op1", "desk", 12345, by="clerk7", why="customer asked")
    assert (desk.points, desk.stored_value) == (2345, 10000) and effects[0].by == "clerk7"
    eve = dt.datetime(2026, 12, 31, 2, tzinfo=CST)
    ran, effects = run_rebates(card, book, eve)
    assert (ran.points, ran.stored_value) == (45, 15990)  # 12300 x 0.013 = 159.90
    assert run_rebates(ran, book, eve)[0] is ran and run_rebates(card, book, NOON) == (card, [])


# --- parking -------------------------------------------------------------------------------------

PARKING = """parking:
  fee_table: [{up_to_minutes: 30, fee: 0}, {up_to_minutes: 120, fee: 10}]
  beyond_every_minutes: 60
  beyond_fee: 5
  daily_cap: 40
  free_when_day_spend: 200
  free_when_points: 5000
  free_tiers: [gold]
  points_per_yuan: 100
"""


@pytest.mark.parametrize(
    ("minutes", "fee"),
    [(30, 0), (31, 1000), (120, 1000), (121, 1500), (180, 1500), (181, 2000), (1440, 4000), (1441, 8000)],
)
def test_parking_fee_table_at_its_edges(minutes, fee):
    assert fee_for(minutes, rules(PARKING).parking) == fee


def stay(session: str, minutes: int, pay_with: str = "cash") -> StayAtExit:
    return StayAtExit(session, NOON, NOON + dt.timedelta(minutes=minutes), DAY, pay_with)


def test_parking_is_free_once_same_day_spend_or_points_reach_the_threshold_or_by_tier():
    book = rules(PARKING)
    card, _ = run(book, sale("t1", line("199.99")))
    _, paying = settle_parking(card, stay("p1", 60), book, NOON)
    assert [e.kind for e in paying] == ["parking_fee"]
    card, _ = run(book, sale("t2", line("0.01")), card=card)
    _, free = settle_parking(card, stay("p1", 60), book, NOON)
    assert of(free, "parking_discount")[0].reason == "same-day spend 20000 >= 20000 cents"
    rich = msgspec.structs.replace(enrol("M2", book), points=5000)
    gold = msgspec.structs.replace(enrol("M3", book), tier="gold")
    assert of(settle_parking(rich, stay("p2", 60), book, NOON)[1], "parking_discount")
    assert of(settle_parking(gold, stay("p3", 60), book, NOON)[1], "parking_discount")[0].reason == "tier gold"


def test_parking_paid_with_points_or_stored_value_once_per_session():
    book = rules(PARKING)
    card = msgspec.structs.replace(enrol("M1", book), points=1200, stored_value=1500)
    _, short = settle_parking(card, stay("p1", 121, "points"), book, NOON)  # 15.00 x 100 = 1500 points
    assert "1500 points needed, 1200 on the card" in of(short, "rejected")[0].reason
    card, paid = settle_parking(card, stay("p2", 121, "stored_value"), book, NOON)
    assert [(e.kind, e.delta, e.amount) for e in paid] == [("parking_fee", 0, 1500), ("stored_value_debit", -1500, 0)]
    again, replayed = settle_parking(card, stay("p2", 121, "stored_value"), book, NOON)
    assert again is card and card.stored_value == 0 and all(e.replayed for e in replayed)


def test_at_the_exit_gate_a_member_parks_free_once_earned_else_pays_from_the_card_or_cash():
    book = rules(PARKING + "  gate_pays_from: [points, stored_value]\n")
    spender, _ = run(book, sale("t1", line("250.00")))
    card, free = settle_at_exit(spender, stay("s1", 60), book, NOON)
    assert [(e.kind, e.amount, e.rule_id) for e in free] == [
        ("parking_fee", 1000, "parking"),
        ("parking_discount", 1000, "parking"),
    ]
    assert free[1].reason == "same-day spend 25000 >= 20000 cents" and card.points == spender.points
    again, replayed = settle_at_exit(card, stay("s1", 60), book, NOON)
    assert (
        again is card
        and all(e.replayed for e in replayed)
        and [e.kind for e in replayed] == ["parking_fee", "parking_discount"]
    )

    saver = msgspec.structs.replace(enrol("M2", book), points=1200, stored_value=500)
    card, by_points = settle_at_exit(saver, stay("s2", 60), book, NOON)  # 10.00 = 1000 points
    assert [(e.kind, e.account, e.delta) for e in by_points] == [
        ("parking_fee", "", 0),
        ("points_spent", "points", -1000),
    ]
    card, by_money = settle_at_exit(card, stay("s3", 60), book, NOON)  # 200 points left; 5.00 stored value is short
    assert [(e.kind, e.amount, e.reason) for e in by_money] == [
        ("parking_fee", 1000, "paid cash: stored value cannot pay 1000 cents (500 available)")
    ]
    assert (card.points, card.stored_value) == (200, 500)
    card, short = settle_at_exit(card, stay("s4", 20), book, NOON)
    assert [(e.kind, e.amount) for e in short] == [("parking_fee", 0)], "nothing due, nothing taken"


def test_at_the_exit_gate_cash_is_the_default_and_a_frozen_card_still_leaves():
    book = rules(PARKING)
    card = msgspec.structs.replace(enrol("M1", book), points=9000, status="frozen")
    assert (
        of(settle_at_exit(card, stay("s1", 60), book, NOON)[1], "parking_discount")[0].reason == "points 9000 >= 5000"
    )
    book = rules(PARKING + "  gate_pays_from: [points]\n")
    _, paid = settle_at_exit(msgspec.structs.replace(card, points=1000), stay("s2", 60), book, NOON)
    assert [(e.kind, e.reason) for e in paid] == [("parking_fee", "paid cash: card is frozen")]
    _, none = settle_at_exit(card, stay("s3", 60), rules(), NOON)
    assert [(e.kind, e.reason) for e in none] == [("rejected", "no parking rules")]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("  gate_pays_from: [points]\n  points_per_yuan: null\n", "points_per_yuan is not set"),
        ("  gate_pays_from: [stored_value]\n  stored_value: false\n", "stored_value is false"),
        ("  gate_pays_from: [vouchers]\n", "points"),
    ],
)
def test_the_gate_pays_only_from_accounts_the_parking_rules_allow(extra, problem):
    with pytest.raises(ConfigError, match=problem):
        rules(PARKING + extra)


# --- holds ---------------------------------------------------------------------------------------


def test_a_hold_reserves_money_the_posted_receipt_settles_and_an_unsettled_one_lapses():
    book = rules("hold_seconds: 60")
    card = msgspec.structs.replace(enrol("M1", book), stored_value=10000)
    card, first = authorise(card, AuthRequest("h1", "t1", 7000), book, NOON)
    _, second = authorise(card, AuthRequest("h2", "t2", 7000), book, NOON)
    assert first.approved and not second.approved and "3000 cents available" in second.reason
    _, other_till = run(book, sale("t9", line("40.00"), tenders=[("stored_value", "40.00", "")]), card=card)
    assert "3000 cents available, 4000 tendered" in of(other_till, "rejected")[0].reason
    posted, _ = run(book, sale("t1", line("70.00"), tenders=[("stored_value", "70.00", "")]), card=card)
    assert posted.stored_value == 3000 and posted.holds == {}
    later = NOON + dt.timedelta(seconds=60)
    _, lapsed = authorise(card, AuthRequest("h3", "t3", 10000), book, later)
    assert lapsed.approved


def test_a_voucher_hold_and_an_authorisation_asked_twice():
    book = rules(VOUCHERS)
    card, _ = run(book, sale("t1", line("300.00")))
    voucher_id = next(iter(card.vouchers))
    card, decision = authorise(card, AuthRequest("h1", "t2", 6000, voucher_id), book, NOON)
    same, again = authorise(card, AuthRequest("h1", "t2", 6000, voucher_id), book, NOON)
    assert decision.approved and again.approved and same is card
    _, refused = authorise(card, AuthRequest("h2", "t3", 5000, voucher_id), book, NOON)
    assert not refused.approved
    _, frozen = authorise(
        msgspec.structs.replace(card, status="frozen"), AuthRequest("h4", "t4", 1, voucher_id), book, NOON
    )
    assert frozen.reason == "card is frozen"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["auth", "post", "wait"]), st.integers(0, 4), st.integers(1, 6000)), max_size=40)
)
def test_two_tills_never_overdraw_stored_value(steps):
    """Whatever two tills authorise and post, in any order, the balance never goes below the live holds or zero."""
    book = rules("hold_seconds: 30")
    card = msgspec.structs.replace(enrol("M1", book), stored_value=10000)
    now = NOON
    for step, (action, txn, cents) in enumerate(steps):
        if action == "wait":
            now += dt.timedelta(seconds=cents % 45)
        elif action == "auth":
            card, _ = authorise(card, AuthRequest(f"h{step}", f"t{txn}", cents), book, now)
        else:
            amount = f"{cents / 100:.2f}"
            card, _ = evaluate(card, sale(f"t{txn}", line(amount), tenders=[("stored_value", amount, "")]), book, now)
        live = sum(h.amount for h in card.holds.values() if h.expires_at > now)
        assert card.stored_value >= 0 and live <= card.stored_value


# --- scheduled and manual operations -------------------------------------------------------------


def test_expiry_writes_off_what_is_left_at_valid_to_and_lists_what_expires_soon():
    book = rules(VOUCHERS)
    card, _ = run(book, sale("t1", line("300.00")))
    voucher = next(iter(card.vouchers.values()))
    assert expiring(card, NOON, dt.timedelta(days=2)) == [voucher]
    assert expire_vouchers(card, book, voucher.valid_to - dt.timedelta(seconds=1)) == (card, [])
    expired, effects = expire_vouchers(card, book, voucher.valid_to)
    assert [(e.kind, e.delta) for e in effects] == [("voucher_expired", -10000)]
    assert (
        expired.vouchers[voucher.voucher_id].remaining == 0
        and expire_vouchers(expired, book, voucher.valid_to)[1] == []
    )


def test_birthday_gift_once_a_year_in_the_birthday_week():
    book = rules(
        "birthday_gift: {points: 200, voucher_campaign: gift}\nvoucher_campaigns: [{id: gift, reward: 50, validity: {days: 7}}]"
    )
    card = msgspec.structs.replace(enrol("M1", book), birthday=dt.date(1990, 11, 20))
    card, effects = birthday_gift(card, book, NOON)
    assert [e.kind for e in effects] == ["points_earned", "voucher_issued"] and card.points == 200
    card, again = birthday_gift(card, book, NOON + dt.timedelta(days=1))
    assert card.points == 200 and all(e.replayed for e in again)
    assert birthday_gift(card, book, NOON + dt.timedelta(days=7))[1] == []


def test_group_grants_enrol_unknown_members_and_run_once():
    book = rules(VOUCHERS)
    known = msgspec.structs.replace(enrol("A", book), points=5)
    cards, effects = group_grant(
        {"A": known}, ["A", "B", "A"], book, NOON, "retain-42", points=100, campaign_id="cos", by="crm", why="at risk"
    )
    assert cards["A"].points == 105 and cards["B"].points == 100 and len(cards["B"].vouchers) == 1
    assert {e.cause for e in effects} == {"retain-42:A", "retain-42:B"} and all(e.reason == "at risk" for e in effects)
    again, replayed = group_grant(cards, ["A"], book, NOON, "retain-42", points=100, by="crm", why="at risk")
    assert again["A"].points == 105 and all(e.replayed for e in replayed)


def test_manual_operations_need_who_and_why_and_cannot_take_points_below_zero():
    book = rules()
    card = msgspec.structs.replace(enrol("M1", book), points=10)
    assert adjust_points(card, book, NOON, "op1", 5, by="", why="x")[1][0].kind == "rejected"
    assert "cannot be taken" in adjust_points(card, book, NOON, "op2", -11, by="a", why="b")[1][0].reason
    card, effects = adjust_points(card, book, NOON, "op3", -10, by="desk-3", why="duplicate receipt")
    assert card.points == 0 and (effects[0].by, effects[0].reason) == ("desk-3", "duplicate receipt")
    card, effects = change_status(card, book, NOON, "op4", "lost", by="desk-3", why="customer call")
    assert card.status == "lost" and effects[0].status == "lost"


# --- backtest ------------------------------------------------------------------------------------


def test_backtest_reports_per_rule_outcomes_and_cost_for_both_rule_books():
    from mallstream.streams.core.backtest import backtest

    current, proposed = rules(VOUCHERS, number=1), rules("earning: {rate: 2}", number=2)
    history = [
        sale("t1", line("300.00")),
        sale("t2", line("50.00"), tenders=[("voucher", "50.00", "t1:cos:0")], ts=NOON + dt.timedelta(hours=1)),
    ]
    report = backtest(history, current, proposed, point_value_cents=1)
    # current: 300 points (the voucher-paid 50.00 earns none), one 100 voucher of which 50 redeemed
    assert report.current.by_rule["earn-base"].points_issued == 300
    assert (report.current.by_rule["cos"].vouchers_issued, report.current.by_rule["cos"].vouchers_redeemed) == (1, 5000)
    assert report.current.cost == 300 + 5000
    # proposed: no campaign, so t2's voucher is paid in cash: (300 + 50) x 2 points
    assert report.proposed.by_rule["earn-base"].points_issued == 700 and report.proposed.cost == 700
    assert report.proposed.rejected == 0 and report.current.version.startswith("1-")
