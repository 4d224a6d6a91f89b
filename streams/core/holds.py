"""Till authorisations: money reserved on the card before a receipt is posted.

A till asks before it closes a sale paid with stored value or a voucher. The
answer places a :class:`~.accounts.Hold`; the posted receipt with the same
``txn_id`` settles it, and an unsettled hold lapses after ``hold_seconds``.
Every authorisation and every posted payment is checked against the balance
minus the live holds of other receipts, so two tills can never overdraw a card.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from .accounts import STORED_VALUE, Hold, MemberCard, voucher_account
from .rules import RuleBook


class AuthRequest(msgspec.Struct, frozen=True):
    """Reserve ``amount`` cents of stored value, or of ``voucher_id`` when given, for ``txn_id``."""

    hold_id: str
    txn_id: str
    amount: int
    voucher_id: str = ""

    @property
    def account(self) -> str:
        return voucher_account(self.voucher_id) if self.voucher_id else STORED_VALUE


class Decision(msgspec.Struct, frozen=True):
    hold_id: str
    approved: bool
    available: int
    reason: str = ""
    expires_at: dt.datetime | None = None


def balance(card: MemberCard, account: str) -> int:
    if account == STORED_VALUE:
        return card.stored_value
    voucher = card.vouchers.get(account.removeprefix("voucher:"))
    return voucher.remaining if voucher else 0


def available(card: MemberCard, account: str, now: dt.datetime, for_txn: str = "") -> int:
    """Balance minus the live holds of receipts other than ``for_txn``."""
    held = sum(
        hold.amount
        for hold in card.holds.values()
        if hold.account == account and hold.txn_id != for_txn and hold.expires_at > now
    )
    return balance(card, account) - held


def live_holds(card: MemberCard, now: dt.datetime, settled_txn: str = "") -> dict[str, Hold]:
    """Holds still in force: expired ones and those of the receipt being posted are dropped."""
    return {
        hold_id: hold for hold_id, hold in card.holds.items() if hold.expires_at > now and hold.txn_id != settled_txn
    }


def authorise(card: MemberCard, request: AuthRequest, rules: RuleBook, now: dt.datetime) -> tuple[MemberCard, Decision]:
    """Place a hold if the card can pay ``request.amount``; asking again with the same hold id repeats the answer."""
    existing = card.holds.get(request.hold_id)
    if existing is not None and existing.expires_at > now:
        return card, Decision(
            request.hold_id, True, available(card, request.account, now), expires_at=existing.expires_at
        )
    room = available(card, request.account, now)
    refusal = _refusal(card, request, rules, now, room)
    if refusal:
        return card, Decision(request.hold_id, False, max(room, 0), reason=refusal)
    expires_at = now + dt.timedelta(seconds=rules.hold_seconds)
    hold = Hold(request.hold_id, request.txn_id, request.account, request.amount, expires_at)
    held = msgspec.structs.replace(card, holds={**live_holds(card, now), request.hold_id: hold})
    return held, Decision(request.hold_id, True, room - request.amount, expires_at=expires_at)


def _refusal(card: MemberCard, request: AuthRequest, rules: RuleBook, now: dt.datetime, room: int) -> str:
    if not rules.card_statuses[card.status].pay:
        return f"card is {card.status}"
    if request.amount <= 0:
        return "amount must be positive"
    if request.voucher_id:
        voucher = card.vouchers.get(request.voucher_id)
        if voucher is None:
            return f"voucher {request.voucher_id} does not belong to this member"
        if not voucher.usable_at(now):
            return f"voucher {request.voucher_id} is not valid at {now.isoformat()}"
    if request.amount > room:
        return f"insufficient balance: {room} cents available"
    return ""
