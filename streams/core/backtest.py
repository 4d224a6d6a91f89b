"""Replaying history through two rule books, side by side, without touching live state.

Each rule book gets its own fresh cards. A historical voucher tender that the
rule book under test never issued is paid in cash instead, so a proposed rule
set is judged on what customers would have received under it.

cost = vouchers redeemed + points issued x point value + rebates + discounts + parking fees waived
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec

from ..records import PosTransaction, Tender
from .accounts import Effect, MemberCard
from .engine import evaluate
from .rules import RuleBook


class RuleOutcome(msgspec.Struct):
    """What one rule did over the replay; money in cents."""

    points_issued: int = 0
    vouchers_issued: int = 0
    voucher_value_issued: int = 0
    vouchers_redeemed: int = 0
    discounts: int = 0
    rebates: int = 0
    parking_waived: int = 0

    def cost(self, point_value_cents: int) -> int:
        return (
            self.vouchers_redeemed
            + self.points_issued * point_value_cents
            + self.rebates
            + self.discounts
            + self.parking_waived
        )


class RuleBookOutcome(msgspec.Struct):
    version: str
    by_rule: dict[str, RuleOutcome]
    rejected: int
    cost: int


class BacktestReport(msgspec.Struct):
    transactions: int
    point_value_cents: int
    current: RuleBookOutcome
    proposed: RuleBookOutcome


def backtest(
    transactions: Iterable[PosTransaction], current: RuleBook, proposed: RuleBook, point_value_cents: int
) -> BacktestReport:
    """Per-rule outcomes and total cost of the same receipts under the current and the proposed rules."""
    history = [txn for txn in transactions if txn.member_id]
    return BacktestReport(
        transactions=len(history),
        point_value_cents=point_value_cents,
        current=_replay(history, current, point_value_cents),
        proposed=_replay(history, proposed, point_value_cents),
    )


def _replay(history: list[PosTransaction], rules: RuleBook, point_value_cents: int) -> RuleBookOutcome:
    cards: dict[str, MemberCard] = {}
    by_rule: dict[str, RuleOutcome] = {}
    rejected = 0
    for txn in history:
        card = cards.get(txn.member_id or "")
        now = txn.ts.astimezone(dt.UTC)
        cards[txn.member_id or ""], effects = evaluate(card, _vouchers_it_issued(card, txn), rules, now)
        rejected += any(effect.kind == "rejected" for effect in effects)
        for effect in effects:
            _count(by_rule.setdefault(effect.rule_id or "(none)", RuleOutcome()), effect)
    cost = sum(outcome.cost(point_value_cents) for outcome in by_rule.values())
    return RuleBookOutcome(version=rules.tag, by_rule=by_rule, rejected=rejected, cost=cost)


def _vouchers_it_issued(card: MemberCard | None, txn: PosTransaction) -> PosTransaction:
    """The receipt with voucher tenders this replay's card does not hold turned into cash."""
    owned = card.vouchers if card else {}
    if all(t.type != "voucher" or t.reference in owned for t in txn.tenders):
        return txn
    tenders = [
        t if t.type != "voucher" or t.reference in owned else Tender(type="cash", amount=t.amount) for t in txn.tenders
    ]
    return msgspec.structs.replace(txn, tenders=tenders)


def _count(outcome: RuleOutcome, effect: Effect) -> None:
    if effect.kind in ("points_earned", "points_reversed"):
        outcome.points_issued += effect.delta
    elif effect.kind == "voucher_issued":
        outcome.vouchers_issued += 1
        outcome.voucher_value_issued += effect.delta
    elif effect.kind in ("voucher_redeemed", "voucher_restored"):
        outcome.vouchers_redeemed -= effect.delta
    elif effect.kind == "tier_discount":
        outcome.discounts += effect.amount
    elif effect.kind == "rebate":
        outcome.rebates += effect.delta
    elif effect.kind == "parking_discount":
        outcome.parking_waived += effect.amount
