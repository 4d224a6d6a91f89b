"""Parking fees for members: the fee table, free parking when earned, paying with points or stored value.

Duration is rounded up to the whole minute. Beyond the last step of the table
each started ``beyond_every_minutes`` block costs ``beyond_fee``; ``daily_cap``
limits the fee per started 24 hours. Parking is free when the same business
day's net spend OR the points balance reaches its threshold, or for the tiers
listed (the first reason that holds is recorded).

At the exit gate (:func:`at_exit`) a car whose plate is on a member's card is settled
on the card (:func:`settle_at_exit`: free if earned, else the fee from the accounts the
rules' ``gate_pays_from`` names, else cash); any other car pays the fee table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from ..records import ParkingSettlement
from . import parking as gates
from .accounts import POINTS, STORED_VALUE, Cause, DayCounters, Effect, MemberCard, record, replay
from .holds import available
from .rules import Parking, RuleBook

PayWith = Literal["cash", "points", "stored_value"]


class StayAtExit(msgspec.Struct, frozen=True):
    """One visit of a member's car, entry to exit, and how the member wants to pay."""

    session_id: str
    entry: dt.datetime
    exit: dt.datetime
    business_day: dt.date
    pay_with: PayWith = "cash"


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


def fee_for_seconds(seconds: float, parking: Parking) -> int:
    """Fee in cents for a stay of ``seconds``, rounded up to the whole minute."""
    return fee_for(math.ceil(seconds / 60), parking)


def at_exit(
    stay: gates.ParkingStay, member_id: str | None, parking: Parking | None, zone: ZoneInfo
) -> tuple[gates.ParkingStay, ParkingSettlement | None]:
    """What the exit gate makes of a finished stay, and the request that settles a member's on the card.

    A member's car (``member_id``: its plate is on the card) is named on the stay and settled
    by the loyalty agent, which alone writes cards: same-day spend, points or tier may make it
    free. Any other car pays the fee table, on the stay. Without parking rules, or without the
    entry read (the length is unknown), nothing is charged. The settlement's business day is
    the exit's local date in ``zone``.
    """
    if member_id:
        stay = msgspec.structs.replace(stay, member_id=member_id)
        if parking is None or stay.entry is None:
            return stay, None
        return stay, ParkingSettlement(
            stay_id=stay.stay_id,
            member_id=member_id,
            mall_id=stay.mall_id,
            car_park_id=stay.car_park_id,
            plate=stay.plate,
            entry=stay.entry,
            exit=stay.exit,
            business_day=stay.exit.astimezone(zone).date(),
        )
    if parking is None or stay.duration_s is None:
        return stay, None
    return msgspec.structs.replace(stay, fee=Decimal(fee_for_seconds(stay.duration_s, parking)).scaleb(-2)), None


def free_because(card: MemberCard, day: DayCounters, parking: Parking) -> str:
    """Why this member parks free today, or '' if they pay."""
    if parking.free_when_day_spend is not None and day.spend >= parking.free_when_day_spend:
        return f"same-day spend {day.spend} >= {parking.free_when_day_spend} cents"
    if parking.free_when_points is not None and card.points >= parking.free_when_points:
        return f"points {card.points} >= {parking.free_when_points}"
    if card.tier in parking.free_tiers:
        return f"tier {card.tier}"
    return ""


def settle_parking(
    card: MemberCard, stay: StayAtExit, rules: RuleBook, now: dt.datetime
) -> tuple[MemberCard, list[Effect]]:
    """The fee, any waiver, and the payment from the card; once per session id."""
    return _settle(card, stay, rules, now, (stay.pay_with,))


def settle_at_exit(
    card: MemberCard, stay: StayAtExit, rules: RuleBook, now: dt.datetime
) -> tuple[MemberCard, list[Effect]]:
    """A member's car at the exit gate: free if earned, else the fee from the first account of the rules'
    ``gate_pays_from`` the card covers, else cash (a car is never kept at the barrier); once per session id.

    Paid cash after the card could not pay, the fee entry says why.
    """
    sources = rules.parking.gate_pays_from if rules.parking else ()
    return _settle(card, stay, rules, now, (*sources, "cash"))


def _settle(
    card: MemberCard, stay: StayAtExit, rules: RuleBook, now: dt.datetime, sources: Sequence[PayWith]
) -> tuple[MemberCard, list[Effect]]:
    """The effects of the first way to pay in ``sources`` that is not refused, or the last refusal."""
    cause = Cause(f"parking:{stay.session_id}", rules.tag)
    replayed = replay(card, cause.id)
    if replayed is not None:
        return card, replayed
    refused: list[Effect] = []
    for source in sources:
        effects = _parking_effects(card, msgspec.structs.replace(stay, pay_with=source), rules, now, cause)
        if not any(effect.kind == "rejected" for effect in effects):
            if refused:  # cash after the card could not pay: just the fee, saying why
                effects = [msgspec.structs.replace(effects[0], reason=f"paid cash: {refused[-1].reason}")]
            break
        refused = [effect for effect in effects if effect.kind == "rejected"]
    else:
        effects = refused
    return record(card, cause.id, stay.business_day, effects), effects


def _parking_effects(
    card: MemberCard, stay: StayAtExit, rules: RuleBook, now: dt.datetime, cause: Cause
) -> list[Effect]:
    parking = rules.parking
    if parking is None:
        return [cause.effect("rejected", "", reason="no parking rules")]
    seconds = (stay.exit - stay.entry).total_seconds()
    if seconds < 0:
        return [cause.effect("rejected", parking.id, reason="exit before entry")]
    fee = fee_for_seconds(seconds, parking)
    effects = [cause.effect("parking_fee", parking.id, amount=fee)]
    reason = free_because(card, card.days.get(stay.business_day, DayCounters()), parking)
    if reason and fee:
        return [*effects, cause.effect("parking_discount", parking.id, amount=fee, reason=reason)]
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
        return [*effects, cause.effect("points_spent", parking.id, account=POINTS, delta=-points)]
    room = available(card, STORED_VALUE, now)
    if not parking.stored_value or fee > room:
        return [
            cause.effect(
                "rejected", parking.id, reason=f"stored value cannot pay {fee} cents ({max(room, 0)} available)"
            )
        ]
    return [*effects, cause.effect("stored_value_debit", parking.id, account=STORED_VALUE, delta=-fee)]
