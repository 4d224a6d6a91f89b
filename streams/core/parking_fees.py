"""Parking fees for members: the fee table, free parking when earned, paying with points or stored value.

Duration is rounded up to the whole minute. Beyond the last step of the table
each started ``beyond_every_minutes`` block costs ``beyond_fee``; ``daily_cap``
limits the fee per started 24 hours. Parking is free when the same business
day's net spend OR the points balance reaches its threshold, or for the tiers
listed (the first reason that holds is recorded).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_CEILING, Decimal
from typing import Literal

import msgspec

from .accounts import POINTS, STORED_VALUE, Cause, DayCounters, Effect, MemberCard, record, replay
from .holds import available
from .rules import Parking, RuleBook


class ParkingStay(msgspec.Struct, frozen=True):
    """One visit of a member's car, entry to exit, and how the member wants to pay."""

    session_id: str
    entry: dt.datetime
    exit: dt.datetime
    business_day: dt.date
    pay_with: Literal["cash", "points", "stored_value"] = "cash"


def fee_for(minutes: int, parking: Parking) -> int:
    """Fee in cents for a stay of ``minutes``."""
    for step in parking.fee_table:
        if minutes <= step.up_to_minutes:
            fee = step.fee
            break
    else:
        last = parking.fee_table[-1]
        blocks = math.ceil((minutes - last.up_to_minutes) / parking.beyond_every_minutes)
        fee = last.fee + blocks * parking.beyond_fee
    if parking.daily_cap is not None:
        fee = min(fee, parking.daily_cap * max(1, math.ceil(minutes / 1440)))
    return fee


def free_because(card: MemberCard, day: DayCounters, parking: Parking) -> str:
    """Why this member parks free today, or '' if they pay."""
    if parking.free_when_day_spend is not None and day.spend >= parking.free_when_day_spend:
        return f"same-day spend {day.spend} >= {parking.free_when_day_spend} cents"
    if parking.free_when_points is not None and card.points >= parking.free_when_points:
        return f"points {card.points} >= {parking.free_when_points}"
    if card.tier in parking.free_tiers:
        return f"tier {card.tier}"
    return ""


def settle_parking(card: MemberCard, stay: ParkingStay, rules: RuleBook, now: dt.datetime) -> tuple[MemberCard, list[Effect]]:
    """The fee, any waiver, and the payment from the card; once per session id."""
    cause = Cause(f"parking:{stay.session_id}", rules.tag)
    replayed = replay(card, cause.id)
    if replayed is not None:
        return card, replayed
    effects = _parking_effects(card, stay, rules, now, cause)
    if any(effect.kind == "rejected" for effect in effects):
        effects = [effect for effect in effects if effect.kind == "rejected"]
    return record(card, cause.id, stay.business_day, effects), effects


def _parking_effects(card: MemberCard, stay: ParkingStay, rules: RuleBook, now: dt.datetime, cause: Cause) -> list[Effect]:
    parking = rules.parking
    if parking is None:
        return [cause.effect("rejected", "", reason="no parking rules")]
    seconds = (stay.exit - stay.entry).total_seconds()
    if seconds < 0:
        return [cause.effect("rejected", parking.id, reason="exit before entry")]
    fee = fee_for(math.ceil(seconds / 60), parking)
    effects = [cause.effect("parking_fee", parking.id, amount=fee)]
    reason = free_because(card, card.days.get(stay.business_day, DayCounters()), parking)
    if reason and fee:
        return effects + [cause.effect("parking_discount", parking.id, amount=fee, reason=reason)]
    if not fee or stay.pay_with == "cash":
        return effects
    if not rules.card_statuses[card.status].pay:
        return [cause.effect("rejected", parking.id, reason=f"card is {card.status}")]
    if stay.pay_with == "points":
        if parking.points_per_yuan is None:
            return [cause.effect("rejected", parking.id, reason="parking cannot be paid with points")]
        points = int((Decimal(fee) * parking.points_per_yuan / 100).to_integral_value(rounding=ROUND_CEILING))
        if points > card.points:
            return [cause.effect("rejected", parking.id, reason=f"{points} points needed, {card.points} on the card")]
        return effects + [cause.effect("points_spent", parking.id, account=POINTS, delta=-points)]
    room = available(card, STORED_VALUE, now)
    if not parking.stored_value or fee > room:
        return [cause.effect("rejected", parking.id, reason=f"stored value cannot pay {fee} cents ({max(room, 0)} available)")]
    return effects + [cause.effect("stored_value_debit", parking.id, account=STORED_VALUE, delta=-fee)]
