"""The member card: its accounts, its memory of receipts, and the effects that move them.

The engine never changes a balance directly: it decides a list of :class:`Effect`
and :func:`post` applies them. So every balance is exactly the sum of the
effects that named its account, which is what the ledger records.

Accounts are ``points`` (int), ``stored_value`` (int cents) and one
``voucher:<id>`` per issued voucher (int cents remaining).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

from .scopes import Scope

POINTS = "points"
STORED_VALUE = "stored_value"
CardStatus = Literal["active", "lost", "frozen", "recalled"]
EffectKind = Literal[
    "enrolled",
    "rejected",
    "voucher_rejected",
    "flagged",
    "points_earned",
    "points_spent",
    "points_reversed",
    "points_refunded",
    "points_adjusted",
    "voucher_issued",
    "voucher_redeemed",
    "voucher_restored",
    "voucher_clawed",
    "voucher_expired",
    "refund_withheld",
    "tier_discount",
    "stored_value_debit",
    "stored_value_credit",
    "rebate",
    "parking_fee",
    "parking_discount",
    "status_changed",
]


def voucher_account(voucher_id: str) -> str:
    return f"voucher:{voucher_id}"


class Voucher(msgspec.Struct, frozen=True):
    """One e-voucher on the card, with the scope and validity it was issued with.

    ``basis`` is the in-scope spend that earned it and ``contributors`` the receipts
    that made up that spend (txn id -> cents), so a return claws back its share.
    ``spent`` is what redemptions used; ``clawed`` what returns took back from
    ``remaining`` and ``withheld`` what they took back from refunds.
    """

    voucher_id: str
    campaign_id: str
    amount: int
    remaining: int
    scope: Scope
    valid_from: dt.datetime
    valid_to: dt.datetime
    source_txn_id: str
    rule_version: str
    basis: int = 0
    contributors: dict[str, int] = {}
    spent: int = 0
    clawed: int = 0
    withheld: int = 0

    def usable_at(self, moment: dt.datetime) -> bool:
        """Valid from ``valid_from`` included to ``valid_to`` excluded."""
        return self.valid_from <= moment < self.valid_to


class Hold(msgspec.Struct, frozen=True):
    """Money a till has authorised for a receipt it has not posted yet."""

    hold_id: str
    txn_id: str
    account: str
    amount: int
    expires_at: dt.datetime


class CampaignDay(msgspec.Struct, frozen=True):
    """One campaign's progress on one business day.

    ``reached``: thresholds already counted (day-window triggers); ``granted``: vouchers
    issued that day (daily limit); ``contributors``: receipts whose spend has not yet
    been turned into a voucher.
    """

    spend: int = 0
    reached: int = 0
    granted: int = 0
    contributors: dict[str, int] = {}


class DayCounters(msgspec.Struct, frozen=True):
    """What one business day did on the card: net spend, points (for caps), campaigns."""

    spend: int = 0
    points: int = 0
    campaigns: dict[str, CampaignDay] = {}


class SaleMemory(msgspec.Struct, frozen=True):
    """What a sale earned and how much of it has been returned, for proportional reversal."""

    total: int
    eligible: int
    points: int
    scope_spend: dict[str, int] = {}
    returned_total: int = 0
    returned_eligible: int = 0
    returned_scope: dict[str, int] = {}
    points_reversed: int = 0
    voided: bool = False


class Effect(msgspec.Struct, frozen=True, omit_defaults=True):
    """One outcome of an input, naming its cause (txn or operation id), rule and rule version.

    ``account``/``delta`` move a balance (points, or cents for money accounts);
    ``amount`` is the cents an effect is about when no balance moves (a discount,
    a fee, a refused tender, money withheld from a refund).
    """

    kind: EffectKind
    cause: str
    rule_id: str
    rule_version: str
    account: str = ""
    delta: int = 0
    amount: int = 0
    voucher_id: str = ""
    voucher: Voucher | None = None
    status: str = ""
    reason: str = ""
    by: str = ""
    replayed: bool = False


class TxnMemory(msgspec.Struct, frozen=True):
    """What one input did to the card: replayed verbatim if the input comes again."""

    business_day: dt.date
    effects: list[Effect]
    sale: SaleMemory | None = None


class MemberCard(msgspec.Struct, frozen=True):
    """Everything the hub knows about one member card; serialisable with msgpack."""

    member_id: str
    tier: str
    status: CardStatus = "active"
    birthday: dt.date | None = None
    points: int = 0
    stored_value: int = 0
    vouchers: dict[str, Voucher] = {}
    holds: dict[str, Hold] = {}
    days: dict[dt.date, DayCounters] = {}
    txns: dict[str, TxnMemory] = {}
    issued_per_campaign: dict[str, int] = {}
    #: the mall of the member's latest receipt: its time zone and id go to schedules and desk work named no mall
    mall_id: str = ""


def post(card: MemberCard, effects: list[Effect]) -> MemberCard:
    """A new card with the effects' balance movements applied; the input card is not changed."""
    points, stored_value, status = card.points, card.stored_value, card.status
    vouchers, issued = card.vouchers, card.issued_per_campaign
    for effect in effects:
        if effect.account == POINTS:
            points += effect.delta
        elif effect.account == STORED_VALUE:
            stored_value += effect.delta
        if effect.voucher is not None:
            vouchers = {**vouchers, effect.voucher_id: effect.voucher}
            campaign = effect.voucher.campaign_id
            issued = {**issued, campaign: issued.get(campaign, 0) + 1}
        elif effect.voucher_id and (effect.account or effect.kind == "refund_withheld"):
            vouchers = {**vouchers, effect.voucher_id: _moved(vouchers[effect.voucher_id], effect)}
        if effect.kind == "status_changed":
            status = effect.status  # type: ignore[assignment]
    return msgspec.structs.replace(
        card, points=points, stored_value=stored_value, status=status, vouchers=vouchers, issued_per_campaign=issued
    )


def _moved(voucher: Voucher, effect: Effect) -> Voucher:
    remaining = voucher.remaining + effect.delta
    if effect.kind in ("voucher_redeemed", "voucher_restored"):
        return msgspec.structs.replace(voucher, remaining=remaining, spent=voucher.spent - effect.delta)
    if effect.kind == "voucher_clawed":
        return msgspec.structs.replace(voucher, remaining=remaining, clawed=voucher.clawed - effect.delta)
    if effect.kind == "refund_withheld":
        return msgspec.structs.replace(voucher, withheld=voucher.withheld + effect.amount)
    return msgspec.structs.replace(voucher, remaining=remaining)


class Cause(msgspec.Struct, frozen=True):
    """Who or what caused effects: a txn or operation id, the rule version, and for manual work who and why."""

    id: str
    version: str
    by: str = ""
    why: str = ""

    def effect(self, kind: EffectKind, rule_id: str, **fields: object) -> Effect:
        fields.setdefault("reason", self.why)
        return Effect(kind=kind, cause=self.id, rule_id=rule_id, rule_version=self.version, by=self.by, **fields)  # type: ignore[arg-type]


def replay(card: MemberCard, cause_id: str) -> list[Effect] | None:
    """The effects an input already had, marked replayed, or None if the card has not seen it."""
    seen = card.txns.get(cause_id)
    if seen is None:
        return None
    return [msgspec.structs.replace(effect, replayed=True) for effect in seen.effects]


def record(card: MemberCard, cause_id: str, day: dt.date, effects: list[Effect]) -> MemberCard:
    """Post an operation's effects and remember them under its id, so running it again changes nothing."""
    posted = post(card, effects)
    return msgspec.structs.replace(posted, txns={**card.txns, cause_id: TxnMemory(business_day=day, effects=effects)})
