"""E-vouchers: issuing them when a campaign triggers, checking redemptions, clawing them back on returns.

A campaign triggers on spend inside its trigger scope, within one receipt or
summed over one business day; ``repeat`` issues one voucher per full multiple.
A voucher pays only for lines inside its own scope, from ``valid_from`` included
to ``valid_to`` excluded, judged at the receipt's own time (an offline till's
receipt uploaded later is judged by when the customer paid).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from ..records import PosLine, PosTransaction
from .accounts import CampaignDay, Cause, DayCounters, Effect, MemberCard, TxnMemory, Voucher, voucher_account
from .earning import receipt_lines
from .holds import available
from .rules import RuleBook, Trigger, VoucherCampaign
from .scopes import cents, spend_in

UNLIMITED = 1 << 62


def issue(campaign: VoucherCampaign, cause: Cause, index: int, at: dt.datetime, contributors: dict[str, int]) -> Effect:
    """A voucher of the campaign's reward, valid per its validity from ``at``; its id is derived from the cause."""
    validity = campaign.validity
    valid_from = max(at, validity.starts) if validity.starts else at
    ends = [
        moment for moment in (validity.ends, at + dt.timedelta(days=validity.days) if validity.days else None) if moment
    ]
    voucher = Voucher(
        voucher_id=f"{cause.id}:{campaign.id}:{index}",
        campaign_id=campaign.id,
        amount=campaign.reward,
        remaining=campaign.reward,
        scope=campaign.usage_scope,
        valid_from=valid_from,
        valid_to=min(ends),
        source_txn_id=cause.id,
        rule_version=cause.version,
        basis=sum(contributors.values()),
        contributors=contributors,
    )
    return cause.effect(
        "voucher_issued",
        campaign.id,
        account=voucher_account(voucher.voucher_id),
        delta=voucher.amount,
        voucher_id=voucher.voucher_id,
        voucher=voucher,
    )


def _thresholds(trigger: Trigger, spend: int) -> int:
    if trigger.repeat:
        return spend // trigger.spend
    return 1 if spend >= trigger.spend else 0


def _room(campaign: VoucherCampaign, card: MemberCard, today: CampaignDay) -> int:
    per_member = (
        UNLIMITED
        if campaign.limit_per_member is None
        else campaign.limit_per_member - card.issued_per_campaign.get(campaign.id, 0)
    )
    per_day = (
        UNLIMITED if campaign.limit_per_member_per_day is None else campaign.limit_per_member_per_day - today.granted
    )
    return max(min(per_member, per_day), 0)


def triggered(
    card: MemberCard, txn: PosTransaction, rules: RuleBook, cause: Cause, day: DayCounters
) -> tuple[list[Effect], dict[str, CampaignDay], dict[str, int]]:
    """(vouchers issued, the day's campaign progress after this sale, in-scope spend per campaign)."""
    lines = receipt_lines(txn)
    issued: list[Effect] = []
    progress = dict(day.campaigns)
    scope_spend: dict[str, int] = {}
    for campaign in rules.voucher_campaigns:
        trigger = campaign.trigger
        if trigger is None or not campaign.contains(txn.business_day):
            continue
        spend = spend_in(trigger.scope, lines, txn.store_id)
        if not spend:
            continue
        scope_spend[campaign.id] = spend
        today = progress.get(campaign.id, CampaignDay())
        if trigger.within == "business_day":
            contributors = {**today.contributors, txn.txn_id: spend}
            reached = _thresholds(trigger, today.spend + spend)
            due = reached - today.reached
        else:
            contributors, reached = {txn.txn_id: spend}, today.reached
            due = _thresholds(trigger, spend)
        granted = min(due, _room(campaign, card, today))
        issued += [issue(campaign, cause, index, txn.ts, contributors) for index in range(granted)]
        waiting = {} if due or trigger.within == "transaction" else contributors
        progress[campaign.id] = CampaignDay(today.spend + spend, reached, today.granted + granted, waiting)
    return issued, progress, scope_spend


def redemptions(
    card: MemberCard, txn: PosTransaction, now: dt.datetime, cause: Cause
) -> tuple[list[Effect], list[Effect]]:
    """(voucher_redeemed effects, voucher_rejected effects) for the receipt's voucher tenders."""
    offered: dict[str, int] = {}
    for tender in txn.tenders:
        if tender.type == "voucher":
            offered[tender.reference] = offered.get(tender.reference, 0) + cents(tender.amount)
    accepted: list[Effect] = []
    refused: list[Effect] = []
    lines = receipt_lines(txn)
    for voucher_id, amount in offered.items():
        voucher = card.vouchers.get(voucher_id)
        problem = _redemption_problem(card, voucher, voucher_id, amount, txn, lines, now)
        rule_id = voucher.campaign_id if voucher else ""
        if problem:
            refused.append(
                cause.effect("voucher_rejected", rule_id, amount=amount, voucher_id=voucher_id, reason=problem)
            )
        else:
            accepted.append(
                cause.effect(
                    "voucher_redeemed",
                    rule_id,
                    account=voucher_account(voucher_id),
                    delta=-amount,
                    voucher_id=voucher_id,
                )
            )
    return accepted, refused


def _redemption_problem(
    card: MemberCard,
    voucher: Voucher | None,
    voucher_id: str,
    amount: int,
    txn: PosTransaction,
    lines: list[PosLine],
    now: dt.datetime,
) -> str:
    if voucher is None:
        return f"voucher {voucher_id!r} does not belong to this member"
    if txn.ts < voucher.valid_from:
        return f"voucher {voucher_id} is not valid before {voucher.valid_from.isoformat()}"
    if txn.ts >= voucher.valid_to:
        return f"voucher {voucher_id} expired at {voucher.valid_to.isoformat()}"
    in_scope = spend_in(voucher.scope, lines, txn.store_id)
    if amount > in_scope:
        return f"voucher {voucher_id} pays only for lines in its scope: {in_scope} cents in scope, {amount} offered"
    room = available(card, voucher_account(voucher_id), now, for_txn=txn.txn_id)
    if amount > room:
        return f"voucher {voucher_id} has {max(room, 0)} cents available, {amount} offered"
    return ""


def clawback(
    card: MemberCard, sale_id: str, memories: Mapping[str, TxnMemory], refund: int, cause: Cause
) -> list[Effect]:
    """Take back, in proportion to what was returned, the vouchers a sale helped earn.

    A voucher's share is its amount x (returned in-scope spend of its receipts /
    the in-scope spend that earned it), rounded half up; a full return takes back
    the whole amount. The share comes first from what remains on the voucher; the
    part already spent is withheld from the refund (never more than the refund);
    an expired part is not charged.
    """
    effects: list[Effect] = []
    refund_left = refund
    for voucher in card.vouchers.values():
        if sale_id not in voucher.contributors or not voucher.basis:
            continue
        returned = sum(
            min(_returned_in_scope(memories, txn_id, voucher.campaign_id), spend)
            for txn_id, spend in voucher.contributors.items()
        )
        target = (2 * voucher.amount * returned + voucher.basis) // (2 * voucher.basis)
        due = target - voucher.clawed - voucher.withheld
        from_remaining = min(max(due, 0), voucher.remaining)
        withheld = min(due - from_remaining, voucher.spent - voucher.withheld, refund_left)
        account = voucher_account(voucher.voucher_id)
        if from_remaining > 0:
            effects.append(
                cause.effect(
                    "voucher_clawed",
                    voucher.campaign_id,
                    account=account,
                    delta=-from_remaining,
                    voucher_id=voucher.voucher_id,
                )
            )
        if withheld > 0:
            refund_left -= withheld
            effects.append(
                cause.effect("refund_withheld", voucher.campaign_id, amount=withheld, voucher_id=voucher.voucher_id)
            )
    return effects


def _returned_in_scope(memories: Mapping[str, TxnMemory], txn_id: str, campaign_id: str) -> int:
    memory = memories.get(txn_id)
    return memory.sale.returned_scope.get(campaign_id, 0) if memory and memory.sale else 0
