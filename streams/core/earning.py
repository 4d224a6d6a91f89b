"""Points a sale earns: base rate, multipliers by scope, tier, date window and birthday week, then caps.

Rounding: each rule's points are summed exactly (Decimal) over the receipt's lines
and rounded down once, so a rule never loses a point per line. Multipliers add:
factors 2 and 3 on the same line earn 1 + 1 + 2 = 4 times the base rate. The part
of the receipt paid with tenders listed in ``no_points_on_tenders`` (vouchers,
points) earns nothing, spread over the lines in proportion to their amounts.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal

from ..records import PosLine, PosTransaction
from .accounts import MemberCard
from .rules import Multiplier, RuleBook
from .scopes import any_covers, cents


def in_birthday_week(birthday: dt.date | None, day: dt.date) -> bool:
    """True when ``day`` is in the ISO week (Monday to Sunday) of the member's birthday; 29 Feb counts as 28 Feb."""
    if birthday is None:
        return False
    week = day.isocalendar()[:2]
    return any(anniversary(birthday, year).isocalendar()[:2] == week for year in (day.year - 1, day.year, day.year + 1))


def anniversary(birthday: dt.date, year: int) -> dt.date:
    """The birthday in ``year``; 29 February is 28 February in other years."""
    try:
        return birthday.replace(year=year)
    except ValueError:
        return dt.date(year, 2, 28)


def receipt_lines(txn: PosTransaction) -> list[PosLine]:
    """The receipt's lines, or one line without attributes standing for the total when it has none."""
    return txn.lines or [PosLine(sku="", qty=Decimal(1), unit_price=txn.total, amount=txn.total)]


def eligible_lines(txn: PosTransaction, rules: RuleBook) -> list[PosLine]:
    return [line for line in receipt_lines(txn) if not any_covers(rules.earning.exclude, line, txn.store_id)]


def _applies(multiplier: Multiplier, card: MemberCard, day: dt.date) -> bool:
    return (
        multiplier.contains(day)
        and (not multiplier.tiers or card.tier in multiplier.tiers)
        and (not multiplier.birthday_week or in_birthday_week(card.birthday, day))
    )


def points_by_rule(
    card: MemberCard, txn: PosTransaction, rules: RuleBook, day_points: int
) -> tuple[list[tuple[str, int]], int]:
    """([(rule id, points)], eligible cents) for a sale, caps applied, given the points its business day already earned."""
    earning = rules.earning
    lines = eligible_lines(txn, rules)
    eligible = sum(cents(line.amount) for line in lines)
    total = cents(txn.total)
    paid_without_points = sum(cents(t.amount) for t in txn.tenders if t.type in earning.no_points_on_tenders)
    share = Decimal(max(total - paid_without_points, 0)) / total if total else Decimal(0)
    weight = earning.rate * share
    earned = [(earning.id, _floor(sum(line.amount for line in lines) * weight))]
    for multiplier in earning.multipliers:
        if _applies(multiplier, card, txn.business_day):
            in_scope = sum(line.amount for line in lines if multiplier.scope.covers(line, txn.store_id))
            # toward zero: a bonus rounds down, a reduction (factor < 1) never takes more than its exact share
            earned.append((multiplier.id, _toward_zero(in_scope * weight * (multiplier.factor - 1))))
    room = min(
        earning.cap_per_transaction if earning.cap_per_transaction is not None else 1 << 62,
        earning.cap_per_day - day_points if earning.cap_per_day is not None else 1 << 62,
    )
    return _capped(earned, max(room, 0)), eligible


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _toward_zero(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_DOWN))


def _capped(earned: list[tuple[str, int]], room: int) -> list[tuple[str, int]]:
    """Trim the excess over ``room`` from the last rules first (bonuses before the base); a receipt never earns below zero."""
    total = sum(points for _, points in earned)
    if total <= 0:
        return []
    excess = total - room
    capped: list[tuple[str, int]] = []
    for rule_id, points in reversed(earned):
        cut = min(max(points, 0), max(excess, 0))
        excess -= cut
        if points - cut:
            capped.append((rule_id, points - cut))
    return capped[::-1]
