"""The seeds' own loyalty cases, worked by hand against config/rules.example.yaml.

Only the public entry points are used (loading the rule file, ``evaluate``); every
expected number below is written out literally and derived in the comments.
Example rules in force on 2026-11-20: 1 point per 1.00 spent, none on the part
paid with a voucher; cosmetics "spend 300 get 100" and clothing "spend 500 get
200", each voucher usable only in its own category, valid 30 days.
"""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from mallstream.streams.core.engine import evaluate
from mallstream.streams.core.rules import RuleFile
from mallstream.streams.records import PosLine, PosTransaction, Tender

RULES = RuleFile(Path(__file__).parent.parent / "config" / "rules.example.yaml").current()
CST = dt.timezone(dt.timedelta(hours=8))
DAY = dt.date(2026, 11, 20)


def at(hour: int, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=CST)


def receipt(txn_id, hour, lines, tenders, kind="sale", original=None, day=DAY):
    total = sum((Decimal(amount) for _, _, amount in lines), Decimal(0))
    return PosTransaction(
        txn_id=txn_id,
        store_id="S101",
        workstation_id="T1",
        seq=1,
        ts=at(hour, day),
        business_day=day,
        kind=kind,
        total=total,
        member_id="M1",
        original_txn_id=original,
        lines=[
            PosLine(sku=sku, qty=Decimal(1), unit_price=Decimal(amount), amount=Decimal(amount), category=category)
            for sku, category, amount in lines
        ],
        tenders=[Tender(type=kind_, amount=Decimal(amount), reference=ref) for kind_, amount, ref in tenders],
    )


def kinds(effects):
    return [(e.kind, e.delta, e.amount) for e in effects]


def test_spend_300_on_cosmetics_gives_a_100_voucher_for_cosmetics_only():
    card, effects = evaluate(
        None, receipt("s1", 10, [("LIP", "cosmetics", "300.00")], [("cash", "300.00", "")]), RULES, at(10)
    )
    assert card.points == 300  # 300.00 x 1 point
    (voucher,) = card.vouchers.values()
    assert voucher.amount == 10000 and voucher.remaining == 10000  # 100.00 in cents
    assert voucher.scope.categories == {"cosmetics"} and not voucher.scope.brands
    assert voucher.campaign_id == "cosmetics-300-100"
    assert voucher.valid_to == at(10) + dt.timedelta(days=30)
    assert ("voucher_issued", 10000, 0) in kinds(effects)


def test_spend_299_99_on_cosmetics_gives_no_voucher():
    card, _ = evaluate(None, receipt("s1", 10, [("LIP", "cosmetics", "299.99")], []), RULES, at(10))
    assert card.points == 299 and card.vouchers == {}


def test_spend_500_on_clothing_gives_a_200_voucher_for_clothing_only():
    card, _ = evaluate(
        None, receipt("s1", 10, [("COAT", "clothing", "500.00")], [("cash", "500.00", "")]), RULES, at(10)
    )
    (voucher,) = card.vouchers.values()
    assert voucher.amount == 20000 and voucher.scope.categories == {"clothing"}
    assert card.points == 500


def test_the_cosmetics_voucher_offered_against_a_clothing_line_is_refused():
    card, _ = evaluate(None, receipt("s1", 10, [("LIP", "cosmetics", "300.00")], []), RULES, at(10))
    (voucher_id,) = card.vouchers
    offered = receipt(
        "s2", 11, [("SHIRT", "clothing", "250.00")], [("voucher", "100.00", voucher_id), ("cash", "150.00", "")]
    )
    after, effects = evaluate(card, offered, RULES, at(11))
    refused = [e for e in effects if e.kind == "voucher_rejected"]
    assert len(refused) == 1 and refused[0].amount == 10000
    assert "only for lines in its scope: 0 cents in scope" in refused[0].reason
    assert after.points == 300 and after.vouchers[voucher_id].remaining == 10000  # nothing of s2 applied


@pytest.mark.parametrize(
    ("paid_by_voucher", "points_on_second", "clawed_from_voucher", "withheld_from_refund"),
    [
        # The 150 purchase is paid 100 by voucher + 50 cash: 50 points; the voucher is fully spent,
        # so returning the 300 takes its whole 100 back from the refund: the customer gets 200.
        ("100.00", 50, 0, 10000),
        # Paid 60 by voucher + 90 cash: 90 points; 40 still on the voucher is cancelled,
        # the 60 spent is withheld from the refund: the customer gets 240.
        ("60.00", 90, 4000, 6000),
    ],
)
def test_buy_300_cosmetics_spend_the_voucher_on_150_then_return_the_300(
    paid_by_voucher, points_on_second, clawed_from_voucher, withheld_from_refund
):
    card, _ = evaluate(
        None, receipt("s1", 10, [("LIP", "cosmetics", "300.00")], [("cash", "300.00", "")]), RULES, at(10)
    )
    (voucher_id,) = card.vouchers
    cash = str(Decimal("150.00") - Decimal(paid_by_voucher))
    second = receipt(
        "s2", 11, [("CREAM", "cosmetics", "150.00")], [("voucher", paid_by_voucher, voucher_id), ("cash", cash, "")]
    )
    card, _ = evaluate(card, second, RULES, at(11))
    assert card.points == 300 + points_on_second
    returned = receipt(
        "r1", 15, [("LIP", "cosmetics", "300.00")], [("cash", "300.00", "")], kind="return", original="s1"
    )
    card, effects = evaluate(card, returned, RULES, at(15))
    assert ("points_reversed", -300, 0) in kinds(effects)  # all 300 points of the returned sale
    assert sum(e.amount for e in effects if e.kind == "refund_withheld") == withheld_from_refund
    assert -sum(e.delta for e in effects if e.kind == "voucher_clawed") == clawed_from_voucher
    assert card.points == points_on_second
    assert card.vouchers[voucher_id].remaining == 0
    assert clawed_from_voucher + withheld_from_refund == 10000  # the whole 100 voucher, exactly


def test_returning_half_of_the_300_takes_back_half_of_the_voucher():
    card, _ = evaluate(
        None, receipt("s1", 10, [("LIP", "cosmetics", "150.00"), ("EYE", "cosmetics", "150.00")], []), RULES, at(10)
    )
    (voucher_id,) = card.vouchers
    second = receipt(
        "s2", 11, [("CREAM", "cosmetics", "150.00")], [("voucher", "60.00", voucher_id), ("cash", "90.00", "")]
    )
    card, _ = evaluate(card, second, RULES, at(11))
    returned = receipt("r1", 15, [("LIP", "cosmetics", "150.00")], [], kind="return", original="s1")
    card, effects = evaluate(card, returned, RULES, at(15))
    # half of 100 = 50: 40 left on the voucher is cancelled, 10 of the 60 spent is withheld
    assert kinds([e for e in effects if e.kind in ("voucher_clawed", "refund_withheld")]) == [
        ("voucher_clawed", -4000, 0),
        ("refund_withheld", 0, 1000),
    ]
    assert card.points == 300 + 90 - 150
