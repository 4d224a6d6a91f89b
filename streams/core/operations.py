"""Scheduled and service-desk operations on a card, pure and with an explicit clock.

Scheduled: the automatic rebate run, voucher expiry, birthday-week gifts, grants
to a group of members. Manual: points adjustment, manual rebate, card status
change, each carrying who did it and why. Every operation has an id; running
it again on the same card changes nothing and replays its effects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from ..records import ManualOperation
from .accounts import POINTS, CardStatus, Cause, Effect, MemberCard, Voucher, record, replay, voucher_account
from .earning import in_birthday_week
from .engine import enrol
from .rebates import rebate, tier_rank
from .rules import RuleBook
from .vouchers import issue

Result = tuple[MemberCard, list[Effect]]


def _once(card: MemberCard, cause: Cause, day: dt.date, effects: Iterable[Effect]) -> Result:
    replayed = replay(card, cause.id)
    if replayed is not None:
        return card, replayed
    planned = list(effects)
    return record(card, cause.id, day, planned), planned


def run_rebates(card: MemberCard, rules: RuleBook, now: dt.datetime) -> Result:
    """Automatic rebates whose ``run_on`` date is today: points converted into stored value."""
    effects: list[Effect] = []
    for strategy in rules.rebates:
        if strategy.mode == "automatic" and now.strftime("%m-%d") in strategy.run_on:
            cause = Cause(f"rebate:{strategy.id}:{now.date().isoformat()}", rules.tag)
            card, done = _once(card, cause, now.date(), rebate(strategy, card.points, tier_rank(card, rules), cause))
            effects += done
    return card, effects


def expire_vouchers(card: MemberCard, rules: RuleBook, now: dt.datetime) -> Result:
    """Unspent value of vouchers whose validity ended at or before ``now`` is written off."""
    effects = [
        Cause(f"expiry:{voucher.voucher_id}", rules.tag).effect(
            "voucher_expired",
            voucher.campaign_id,
            account=voucher_account(voucher.voucher_id),
            delta=-voucher.remaining,
            voucher_id=voucher.voucher_id,
        )
        for voucher in card.vouchers.values()
        if voucher.remaining > 0 and voucher.valid_to <= now
    ]
    for effect in effects:
        card, _ = _once(card, Cause(effect.cause, rules.tag), now.date(), [effect])
    return card, effects


#: How many days back one scheduled run catches up at most.
CATCH_UP_DAYS = 366


def scheduled_run(card: MemberCard, rules: RuleBook, now: dt.datetime, since: dt.datetime | None = None) -> Result:
    """Everything due on a card when event time reaches ``now``: automatic rebates, voucher expiry, birthday gift.

    Dated runs (rebates, birthday gift) are done for every day from the one after ``since``
    (at most a year back; without it, ``now``'s day only) to ``now``'s, at ``now``'s time of
    day, so one run catches up on days a fast replay went through at once. Effects of runs
    already done come back ``replayed``.
    """
    behind = 1 if since is None else min(max((now.date() - since.date()).days, 1), CATCH_UP_DAYS)
    first = now - dt.timedelta(days=behind - 1)
    effects: list[Effect] = []
    for offset in range((now.date() - first.date()).days + 1):
        for step in (run_rebates, birthday_gift):
            card, done = step(card, rules, first + dt.timedelta(days=offset))
            effects += done
    card, expired = expire_vouchers(card, rules, now)
    return card, effects + expired


def expiring(card: MemberCard, now: dt.datetime, within: dt.timedelta) -> list[Voucher]:
    """Vouchers with value left that expire within ``within``: what the 'about to expire' message lists."""
    return [v for v in card.vouchers.values() if v.remaining > 0 and now < v.valid_to <= now + within]


def birthday_gift(card: MemberCard, rules: RuleBook, now: dt.datetime) -> Result:
    """The rule file's birthday gift, once a year, on any day of the member's birthday week."""
    gift = rules.birthday_gift
    if gift is None or not in_birthday_week(card.birthday, now.date()):
        return card, []
    cause = Cause(f"birthday:{gift.id}:{now.date().isocalendar()[0]}", rules.tag)
    return _once(card, cause, now.date(), _gift(rules, cause, now, gift.points, gift.voucher_campaign, gift.id))


def _gift(
    rules: RuleBook, cause: Cause, now: dt.datetime, points: int, campaign_id: str | None, rule_id: str
) -> list[Effect]:
    effects = [cause.effect("points_earned", rule_id, account=POINTS, delta=points)] if points else []
    campaign = rules.campaign(campaign_id) if campaign_id else None
    if campaign_id and campaign is None:
        return [cause.effect("rejected", rule_id, reason=f"no voucher campaign {campaign_id!r}")]
    if campaign is not None:
        effects.append(issue(campaign, cause, 0, now, {}))
    return effects


def group_grant(
    cards: Mapping[str, MemberCard | None],
    member_ids: Iterable[str],
    rules: RuleBook,
    now: dt.datetime,
    op_id: str,
    points: int = 0,
    campaign_id: str | None = None,
    by: str = "",
    why: str = "",
    rule_id: str = "",
) -> tuple[dict[str, MemberCard], list[Effect]]:
    """Points and/or a voucher to each member of a group (e.g. a churn segment); unknown members are enrolled.

    Effects name ``rule_id`` (a group grant of the rule file), or the operation id when the grant is ad hoc.
    """
    updated: dict[str, MemberCard] = {}
    effects: list[Effect] = []
    for member_id in dict.fromkeys(member_ids):
        card = cards.get(member_id) or enrol(member_id, rules)
        cause = Cause(f"{op_id}:{member_id}", rules.tag, by, why)
        updated[member_id], done = _once(
            card, cause, now.date(), _gift(rules, cause, now, points, campaign_id, rule_id or op_id)
        )
        effects += done
    return updated, effects


def _manual(
    card: MemberCard, rules: RuleBook, now: dt.datetime, op_id: str, by: str, why: str, plan: list[Effect]
) -> Result:
    cause = Cause(op_id, rules.tag, by, why)
    if not by or not why:
        return card, [cause.effect("rejected", "manual", reason="a manual operation needs who (by) and why")]
    return _once(card, cause, now.date(), plan)


def adjust_points(
    card: MemberCard, rules: RuleBook, now: dt.datetime, op_id: str, delta: int, by: str, why: str
) -> Result:
    """Service-desk correction of the points balance; it may not take the balance below zero."""
    cause = Cause(op_id, rules.tag, by, why)
    if card.points + delta < 0:
        plan = [cause.effect("rejected", "manual", reason=f"{-delta} points cannot be taken from {card.points}")]
    else:
        plan = [cause.effect("points_adjusted", "manual", account=POINTS, delta=delta)]
    return _manual(card, rules, now, op_id, by, why, plan)


def manual_rebate(
    card: MemberCard, rules: RuleBook, now: dt.datetime, op_id: str, strategy_id: str, points: int, by: str, why: str
) -> Result:
    """Convert ``points`` at the service desk by a ``manual`` rebate strategy."""
    cause = Cause(op_id, rules.tag, by, why)
    strategy = next((r for r in rules.rebates if r.id == strategy_id and r.mode == "manual"), None)
    if strategy is None:
        plan = [cause.effect("rejected", strategy_id, reason=f"no manual rebate strategy {strategy_id!r}")]
    else:
        plan = rebate(strategy, min(points, card.points), tier_rank(card, rules), cause) or [
            cause.effect("rejected", strategy_id, reason=f"{min(points, card.points)} points convert to nothing")
        ]
    return _manual(card, rules, now, op_id, by, why, plan)


def change_status(
    card: MemberCard, rules: RuleBook, now: dt.datetime, op_id: str, status: CardStatus, by: str, why: str
) -> Result:
    """Issue control: a card reported lost, frozen, recalled, or made active again."""
    plan = [Cause(op_id, rules.tag, by, why).effect("status_changed", "manual", status=status)]
    return _manual(card, rules, now, op_id, by, why, plan)


def manual(card: MemberCard, operation: ManualOperation, rules: RuleBook, now: dt.datetime) -> Result:
    """A service-desk operation as it came off ``loyalty.requests``."""
    op = operation
    if op.action == "adjust":
        return adjust_points(card, rules, now, op.op_id, op.points, op.by, op.why)
    if op.action == "rebate":
        return manual_rebate(card, rules, now, op.op_id, op.strategy_id, op.points, op.by, op.why)
    return change_status(card, rules, now, op.op_id, op.status, op.by, op.why)
