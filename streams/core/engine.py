"""The loyalty rule engine: one receipt against one member card, as a pure function.

``evaluate(card, txn, rules, now)`` returns the new card and the effects the
receipt had, each naming its cause (txn id), rule and rule version. No I/O: it
runs the same in a faust agent, a test, a backtest or a benchmark loop.

- Exactly once per ``txn_id``: the card remembers what each receipt did; a receipt
  seen again changes nothing and its effects come back marked ``replayed``.
- All or nothing: a receipt with any refused part (negative amount, tenders not
  summing to the total, a voucher the member does not own, expired or out of
  scope, too little balance, a refused card) is rejected whole, with reasons.
- Event time: thresholds, caps, multiplier windows and birthday week use the
  receipt's own ``business_day``, voucher validity its ``ts``; ``now`` only
  decides which till holds are still alive.

Rounding and claw-back rules are in ``docs/loyalty.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from types import MappingProxyType
from typing import NamedTuple

import msgspec

from ..records import PosTransaction
from .accounts import (
    POINTS,
    STORED_VALUE,
    Cause,
    DayCounters,
    Effect,
    MemberCard,
    SaleMemory,
    TxnMemory,
    post,
    replay,
    voucher_account,
)
from .discounts import tier_discounts
from .earning import eligible_lines, points_by_rule, receipt_lines
from .holds import available, live_holds
from .rebates import rebate, tier_rank
from .rules import RuleBook
from .scopes import cents, spend_in
from .vouchers import clawback, redemptions, triggered

#: Tenders paid from the member's own accounts.
MEMBER_TENDERS = frozenset({"stored_value", "voucher", "points"})
REFUSALS = frozenset({"rejected", "voucher_rejected"})
#: How a void gives back what its sale paid from the member's accounts.
PAYMENT_REVERSALS = {
    "voucher_redeemed": "voucher_restored",
    "stored_value_debit": "stored_value_credit",
    "points_spent": "points_refunded",
}


class Outcome(NamedTuple):
    """What a receipt does, before it is committed to the card."""

    effects: list[Effect]
    sale: SaleMemory | None = None
    days: Mapping[dt.date, DayCounters] = MappingProxyType({})
    memories: Mapping[str, TxnMemory] = MappingProxyType({})


def enrol(member_id: str, rules: RuleBook, birthday: dt.date | None = None) -> MemberCard:
    """A new card at the base tier: the seeds issue a card to a customer who has none."""
    return MemberCard(member_id=member_id, tier=rules.base_tier, birthday=birthday)


def evaluate(
    card: MemberCard | None, txn: PosTransaction, rules: RuleBook, now: dt.datetime, birthday: dt.date | None = None
) -> tuple[MemberCard, list[Effect]]:
    """Apply one receipt to a member card (``None``: enrol the member first, with ``birthday`` from master data).

    The input card is not changed."""
    cause = Cause(txn.txn_id, rules.tag)
    enrolled: list[Effect] = []
    if card is None:
        if not txn.member_id:
            raise ValueError(f"receipt {txn.txn_id} names no member: there is no card to enrol")
        card = enrol(txn.member_id, rules, birthday)
        enrolled.append(cause.effect("enrolled", "", reason=f"tier {card.tier}"))
    replayed = replay(card, txn.txn_id)
    if replayed is not None:
        return card, replayed
    problems = _problems(card, txn, rules)
    if problems:
        outcome = Outcome([cause.effect("rejected", "", reason=problem) for problem in problems])
    elif txn.kind == "sale":
        outcome = _sale(card, txn, rules, now, cause)
    elif txn.kind == "return":
        outcome = _return(card, txn, rules, cause)
    else:
        outcome = _void(card, txn, rules, cause)
    if any(effect.kind in REFUSALS for effect in outcome.effects):
        outcome = Outcome([e for e in outcome.effects if e.kind in REFUSALS or e.kind == "flagged"])
    effects = enrolled + outcome.effects
    return _commit(card, txn, outcome._replace(effects=effects), rules, now), effects


def _problems(card: MemberCard, txn: PosTransaction, rules: RuleBook) -> list[str]:
    problems = []
    if txn.total < 0 or any(line.amount < 0 for line in txn.lines) or any(t.amount < 0 for t in txn.tenders):
        problems.append("negative amount: amounts are positive, returns included")
    if txn.tenders and sum(t.amount for t in txn.tenders) != txn.total:
        problems.append(f"tenders sum to {sum(t.amount for t in txn.tenders)}, total is {txn.total}")
    if txn.lines and sum(line.amount for line in txn.lines) != txn.total:
        problems.append(f"lines sum to {sum(line.amount for line in txn.lines)}, total is {txn.total}")
    if (txn.kind == "sale") == bool(txn.original_txn_id):
        problems.append("a sale has no original_txn_id; a return or void must name one")
    if card.days and txn.business_day < max(card.days) - dt.timedelta(days=rules.retention_days):
        problems.append(f"business day {txn.business_day} is older than the {rules.retention_days}-day retention")
    return problems


def _sale(card: MemberCard, txn: PosTransaction, rules: RuleBook, now: dt.datetime, cause: Cause) -> Outcome:
    policy = rules.card_statuses[card.status]
    paying = [t for t in txn.tenders if t.type in MEMBER_TENDERS]
    if not policy.earn and not (paying and policy.pay):
        return Outcome([cause.effect("rejected", "", reason=f"card is {card.status}")])
    if paying and not policy.pay:
        return Outcome([cause.effect("rejected", "", reason=f"card is {card.status}: it cannot pay")])
    effects = _payments(card, txn, rules, now, cause)
    day = card.days.get(txn.business_day, DayCounters())
    scope_spend: dict[str, int]
    earned, eligible, scope_spend, progress = 0, 0, {}, day.campaigns
    if policy.earn:
        by_rule, eligible = points_by_rule(card, txn, rules, day.points)
        earned = sum(points for _, points in by_rule)
        effects += [cause.effect("points_earned", rule_id, account=POINTS, delta=points) for rule_id, points in by_rule]
        effects += tier_discounts(card, txn, rules, cause)
        issued, progress, scope_spend = triggered(card, txn, rules, cause, day)
        effects += issued
        points_after = card.points + sum(e.delta for e in effects if e.account == POINTS)
        for strategy in rules.rebates:
            if strategy.mode == "semi_automatic" and strategy.serves(txn.store_id):
                effects += rebate(strategy, points_after, tier_rank(card, rules), cause)
                points_after = card.points + sum(e.delta for e in effects if e.account == POINTS)
    effects += _flags(card, txn, rules, cause)
    total = cents(txn.total)
    sale = SaleMemory(total=total, eligible=eligible, points=earned, scope_spend=scope_spend)
    today = DayCounters(day.spend + total, day.points + earned, progress)
    return Outcome(effects, sale, {txn.business_day: today})


def _payments(card: MemberCard, txn: PosTransaction, rules: RuleBook, now: dt.datetime, cause: Cause) -> list[Effect]:
    """Redemptions and debits for the tenders paid from the card, or the reasons they are refused."""
    accepted, refused = redemptions(card, txn, now, cause)
    stored = sum(cents(t.amount) for t in txn.tenders if t.type == "stored_value")
    if stored:
        room = available(card, STORED_VALUE, now, for_txn=txn.txn_id)
        if stored > room:
            refused.append(
                cause.effect(
                    "rejected",
                    "",
                    amount=stored,
                    reason=f"stored value has {max(room, 0)} cents available, {stored} tendered",
                )
            )
        else:
            accepted.append(cause.effect("stored_value_debit", "", account=STORED_VALUE, delta=-stored))
    paid_in_points = sum(cents(t.amount) for t in txn.tenders if t.type == "points")
    if paid_in_points:
        strategy = rules.points_payment(txn.store_id)
        needed = points_for(paid_in_points, strategy.ratio, ROUND_CEILING) if strategy and strategy.ratio else 0
        if strategy is None:
            refused.append(
                cause.effect("rejected", "", amount=paid_in_points, reason=f"points cannot pay at store {txn.store_id}")
            )
        elif needed > card.points:
            refused.append(
                cause.effect(
                    "rejected",
                    strategy.id,
                    amount=paid_in_points,
                    reason=f"{needed} points needed, {card.points} on the card",
                )
            )
        else:
            accepted.append(cause.effect("points_spent", strategy.id, account=POINTS, delta=-needed))
    return refused or accepted


def points_for(amount_cents: int, money_per_point: Decimal, rounding: str) -> int:
    """Points worth ``amount_cents``: rounded up when the member pays with points, down when points are given back."""
    return int((Decimal(amount_cents) / (money_per_point * 100)).to_integral_value(rounding=rounding))


def _flags(card: MemberCard, txn: PosTransaction, rules: RuleBook, cause: Cause) -> list[Effect]:
    """One flag naming the lines that lack attributes some rule needed: those rules used what was there."""
    offered = [
        card.vouchers[t.reference].scope for t in txn.tenders if t.type == "voucher" and t.reference in card.vouchers
    ]
    needed = sorted(rules.line_attributes_read.union(*(scope.needed_attributes() for scope in offered)))
    missing = []
    for line in txn.lines:
        lacking = [attribute for attribute in needed if not getattr(line, attribute)]
        if lacking:
            missing.append(f"{line.sku} lacks {', '.join(lacking)}")
    if not missing:
        return []
    return [cause.effect("flagged", "", reason="missing line attributes: " + "; ".join(missing))]


def _return(card: MemberCard, txn: PosTransaction, rules: RuleBook, cause: Cause) -> Outcome:
    original_id = txn.original_txn_id or ""
    memory = card.txns.get(original_id)
    refunds = _refunds(card, txn, rules, cause)
    if memory is None:
        returned = sum(cents(line.amount) for line in eligible_lines(txn, rules))
        points = int((Decimal(returned) / 100 * rules.earning.rate).to_integral_value(rounding=ROUND_FLOOR))
        effects = [
            cause.effect("flagged", "", reason=f"original sale {original_id} unknown: base-rate points reversed")
        ]
        if points:
            effects.append(cause.effect("points_reversed", rules.earning.id, account=POINTS, delta=-points))
        return Outcome(effects + refunds)
    refusal = _not_reversible(memory, original_id)
    if refusal:
        return Outcome([cause.effect("rejected", "", reason=refusal)])
    assert memory.sale is not None
    sale = memory.sale
    lines = receipt_lines(txn)
    total = cents(txn.total)
    eligible = (
        sum(cents(line.amount) for line in eligible_lines(txn, rules))
        if txn.lines
        else _share(sale.eligible, total, sale.total)
    )
    scope_returned = {}
    for campaign_id, spend in sale.scope_spend.items():
        campaign = rules.campaign(campaign_id)
        trigger = campaign.trigger if campaign else None
        scope_returned[campaign_id] = (
            spend_in(trigger.scope, lines, txn.store_id) if txn.lines and trigger else _share(spend, total, sale.total)
        )
    after = msgspec.structs.replace(
        sale,
        returned_total=min(sale.total, sale.returned_total + total),
        returned_eligible=min(sale.eligible, sale.returned_eligible + eligible),
        returned_scope={
            c: min(s, sale.returned_scope.get(c, 0) + scope_returned[c]) for c, s in sale.scope_spend.items()
        },
    )
    return _reverse(card, original_id, memory, after, total, cause, refunds)


def _share(part: int, of: int, whole: int) -> int:
    """``part`` x ``of`` / ``whole`` rounded down: a return without lines is spread over the sale in proportion."""
    return part * of // whole if whole else 0


def _not_reversible(memory: TxnMemory, original_id: str) -> str:
    if memory.sale is None:
        return f"{original_id} is not a sale this card accepted"
    if memory.sale.voided:
        return f"sale {original_id} was voided"
    return ""


def _reverse(
    card: MemberCard,
    original_id: str,
    memory: TxnMemory,
    after: SaleMemory,
    refund: int,
    cause: Cause,
    extra: list[Effect],
) -> Outcome:
    """Points and vouchers taken back in proportion to what of the sale is now returned; counters of its day reduced."""
    sale = memory.sale
    assert sale is not None
    if sale.eligible:
        target = (2 * sale.points * after.returned_eligible + sale.eligible) // (2 * sale.eligible)
    else:
        target = sale.points if after.returned_total >= sale.total else 0
    reversed_now = target - sale.points_reversed
    after = msgspec.structs.replace(after, points_reversed=target)
    effects = []
    if reversed_now:
        effects.append(cause.effect("points_reversed", "", account=POINTS, delta=-reversed_now))
    memories = {**card.txns, original_id: msgspec.structs.replace(memory, sale=after)}
    effects += clawback(card, original_id, memories, refund, cause)
    day = card.days.get(memory.business_day, DayCounters())
    campaigns = dict(day.campaigns)
    for campaign_id, progress in day.campaigns.items():
        returned = after.returned_scope.get(campaign_id, 0) - sale.returned_scope.get(campaign_id, 0)
        campaigns[campaign_id] = msgspec.structs.replace(progress, spend=progress.spend - returned)
    counters = DayCounters(
        day.spend - (after.returned_total - sale.returned_total), day.points - reversed_now, campaigns
    )
    return Outcome(effects + extra, None, {memory.business_day: counters}, {original_id: memories[original_id]})


def _refunds(card: MemberCard, txn: PosTransaction, rules: RuleBook, cause: Cause) -> list[Effect]:
    """Money a return gives back to the card, as its tenders say: stored value, a voucher, points."""
    effects = []
    for tender in txn.tenders:
        amount = cents(tender.amount)
        if tender.type == "stored_value":
            effects.append(cause.effect("stored_value_credit", "", account=STORED_VALUE, delta=amount))
        elif tender.type == "voucher":
            voucher = card.vouchers.get(tender.reference)
            if voucher is None:
                effects.append(
                    cause.effect(
                        "voucher_rejected",
                        "",
                        amount=amount,
                        voucher_id=tender.reference,
                        reason=f"voucher {tender.reference!r} does not belong to this member",
                    )
                )
            else:
                restored = min(amount, voucher.spent)
                effects.append(
                    cause.effect(
                        "voucher_restored",
                        voucher.campaign_id,
                        account=voucher_account(voucher.voucher_id),
                        delta=restored,
                        voucher_id=voucher.voucher_id,
                    )
                )
        elif tender.type == "points":
            strategy = rules.points_payment(txn.store_id)
            if strategy is None or strategy.ratio is None:
                effects.append(
                    cause.effect("rejected", "", amount=amount, reason=f"points cannot refund at store {txn.store_id}")
                )
            else:
                effects.append(
                    cause.effect(
                        "points_refunded",
                        strategy.id,
                        account=POINTS,
                        delta=points_for(amount, strategy.ratio, ROUND_FLOOR),
                    )
                )
    return effects


def _void(card: MemberCard, txn: PosTransaction, rules: RuleBook, cause: Cause) -> Outcome:
    """A void cancels its sale: everything it earned is taken back and what it paid from the card given back."""
    original_id = txn.original_txn_id or ""
    memory = card.txns.get(original_id)
    if memory is None:
        return Outcome([cause.effect("flagged", "", reason=f"original sale {original_id} unknown: nothing to void")])
    refusal = _not_reversible(memory, original_id)
    if not refusal and memory.sale is not None and memory.sale.returned_total:
        refusal = f"sale {original_id} has returns: return the rest instead of voiding"
    if refusal:
        return Outcome([cause.effect("rejected", "", reason=refusal)])
    sale = memory.sale
    assert sale is not None
    after = msgspec.structs.replace(
        sale,
        returned_total=sale.total,
        returned_eligible=sale.eligible,
        returned_scope=dict(sale.scope_spend),
        voided=True,
    )
    given_back = [
        cause.effect(PAYMENT_REVERSALS[e.kind], e.rule_id, account=e.account, delta=-e.delta, voucher_id=e.voucher_id)  # type: ignore[arg-type]
        for e in memory.effects
        if e.kind in PAYMENT_REVERSALS
    ]
    return _reverse(card, original_id, memory, after, sale.total, cause, given_back)


def _commit(card: MemberCard, txn: PosTransaction, outcome: Outcome, rules: RuleBook, now: dt.datetime) -> MemberCard:
    """Post the effects, update counters and memories, settle the receipt's holds, forget what retention drops."""
    posted = post(card, outcome.effects)
    memory = TxnMemory(business_day=txn.business_day, effects=outcome.effects, sale=outcome.sale)
    days = {**card.days, **outcome.days}
    txns = {**card.txns, **outcome.memories, txn.txn_id: memory}
    if txn.business_day not in card.days and outcome.days:
        horizon = max(days) - dt.timedelta(days=rules.retention_days)
        days = {day: counters for day, counters in days.items() if day >= horizon}
        txns = {txn_id: seen for txn_id, seen in txns.items() if seen.business_day >= horizon}
    holds = live_holds(card, now, settled_txn=txn.txn_id)
    mall_id = txn.mall_id or card.mall_id
    return msgspec.structs.replace(posted, days=days, txns=txns, holds=holds, mall_id=mall_id)
