"""What a member is told, decided from what happened to the card: pure, for ``members.notifications``.

- ``points_changed``: one per input that moved the points balance (net of its effects);
- ``voucher_issued``: one per voucher the input issued;
- ``voucher_expiring``: once per voucher, when event time first finds it expiring within N days;
- ``birthday``: once a year, on the first scheduled run of the member's birthday week.

Effects that come back ``replayed`` tell nothing new, so they notify nobody. Reminders
are remembered on the card (as inputs without effects), so each is sent once.
"""

from __future__ import annotations

import datetime as dt

from ..records import MemberNotification
from .accounts import POINTS, Effect, MemberCard, record, replay
from .earning import in_birthday_week
from .operations import expiring


def notices(card: MemberCard, effects: list[Effect], ts: dt.datetime) -> list[MemberNotification]:
    """Notifications for the fresh effects of one input on ``card`` (the card after them)."""
    fresh = [effect for effect in effects if not effect.replayed]
    found: list[MemberNotification] = []
    by_cause: dict[str, int] = {}
    for effect in fresh:
        if effect.account == POINTS:
            by_cause[effect.cause] = by_cause.get(effect.cause, 0) + effect.delta
        if effect.kind == "voucher_issued" and effect.voucher is not None:
            found.append(
                MemberNotification(
                    notification_id=f"voucher_issued:{effect.voucher_id}",
                    member_id=card.member_id,
                    kind="voucher_issued",
                    ts=ts,
                    cause=effect.cause,
                    voucher_id=effect.voucher_id,
                    amount_cents=effect.delta,
                    valid_to=effect.voucher.valid_to,
                )
            )
    found += [
        MemberNotification(
            notification_id=f"points_changed:{cause}:{card.member_id}",
            member_id=card.member_id,
            kind="points_changed",
            ts=ts,
            cause=cause,
            points_delta=delta,
            points_balance=card.points,
        )
        for cause, delta in by_cause.items()
        if delta
    ]
    return found


def reminders(
    card: MemberCard, now: dt.datetime, expiring_within: dt.timedelta
) -> tuple[MemberCard, list[MemberNotification]]:
    """Expiry reminders and the birthday greeting due at ``now`` and not sent before; the card remembers them."""
    due = [
        (
            f"voucher_expiring:{voucher.voucher_id}",
            MemberNotification(
                notification_id=f"voucher_expiring:{voucher.voucher_id}",
                member_id=card.member_id,
                kind="voucher_expiring",
                ts=now,
                voucher_id=voucher.voucher_id,
                amount_cents=voucher.remaining,
                valid_to=voucher.valid_to,
            ),
        )
        for voucher in expiring(card, now, expiring_within)
    ]
    if in_birthday_week(card.birthday, now.date()):
        greeting = f"birthday:{card.member_id}:{now.date().isocalendar()[0]}"
        due.append(
            (greeting, MemberNotification(notification_id=greeting, member_id=card.member_id, kind="birthday", ts=now))
        )
    sent = []
    for memory_id, notification in due:
        if replay(card, memory_id) is None:
            card = record(card, memory_id, now.date(), [])
            sent.append(notification)
    return card, sent
