"""When a card next needs the daily schedule, so a day start runs the cards due that day, not all of them.

The schedule (:func:`~.operations.scheduled_run` and :func:`~.notices.reminders`, at the start
of a day in the card's mall's time zone) does something for a card only on:

- the day start at or after one of its vouchers with value left ends (expiry);
- the first day start at which such a voucher ends within the reminder window, while it has
  not been reminded (the reminder);
- a day of the member's birthday week whose year's gift or greeting is not done yet;
- an automatic rebate's ``run_on`` day, while the card has points enough for it.

:func:`next_scheduled_day` is the first such day after a given one; until then, or until the
card or the rules change, the schedule would leave the card as it is and say nothing.
"""

from __future__ import annotations

import datetime as dt

from .accounts import MemberCard, replay
from .earning import anniversary
from .rules import RuleBook

#: How far ahead a rebate date or a birthday week is looked for (29 February comes every four years).
_LOOK_AHEAD_YEARS = 4


def next_scheduled_day(
    card: MemberCard, rules: RuleBook, after: dt.date, zone: dt.tzinfo, expiring_within: dt.timedelta
) -> dt.date | None:
    """The first day after ``after`` at whose start the schedule has something to do for ``card``; None: never."""
    first = after + dt.timedelta(days=1)
    days = [
        day
        for day in (
            *_voucher_days(card, first, zone, expiring_within),
            _birthday_day(card, rules, first),
            _rebate_day(card, rules, first),
        )
        if day is not None
    ]
    return min(days, default=None)


def _first_start_at_or_after(moment: dt.datetime, zone: dt.tzinfo) -> dt.date:
    day = moment.astimezone(zone).date()
    return day if _start(day, zone) >= moment else day + dt.timedelta(days=1)


def _start(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), zone)


def _voucher_days(
    card: MemberCard, first: dt.date, zone: dt.tzinfo, expiring_within: dt.timedelta
) -> list[dt.date | None]:
    days: list[dt.date | None] = []
    for voucher in card.vouchers.values():
        if voucher.remaining <= 0:
            continue
        days.append(max(_first_start_at_or_after(voucher.valid_to, zone), first))
        if replay(card, f"voucher_expiring:{voucher.voucher_id}") is None:
            remind = max(_first_start_at_or_after(voucher.valid_to - expiring_within, zone), first)
            if _start(remind, zone) < voucher.valid_to:
                days.append(remind)
    return days


def _birthday_day(card: MemberCard, rules: RuleBook, first: dt.date) -> dt.date | None:
    """The first day from ``first`` in a birthday week whose greeting (or the rule file's gift) is not done."""
    if card.birthday is None:
        return None
    for year in range(first.year - 1, first.year + _LOOK_AHEAD_YEARS):
        birthday = anniversary(card.birthday, year)
        monday = birthday - dt.timedelta(days=birthday.weekday())
        sunday = monday + dt.timedelta(days=6)
        if sunday < first:
            continue
        iso_year = monday.isocalendar()[0]
        memories = [f"birthday:{card.member_id}:{iso_year}"]
        if rules.birthday_gift is not None:
            memories.append(f"birthday:{rules.birthday_gift.id}:{iso_year}")
        if any(replay(card, memory) is None for memory in memories):
            return max(monday, first)
    return None


def _rebate_day(card: MemberCard, rules: RuleBook, first: dt.date) -> dt.date | None:
    """The first automatic rebate day from ``first`` on which the card has points enough for that rebate."""
    month_days = {
        month_day
        for strategy in rules.rebates
        if strategy.mode == "automatic" and card.points >= max(strategy.min_points, 1)
        for month_day in strategy.run_on
    }
    occurrences = [
        day
        for month, day_of_month in sorted({(int(md[:2]), int(md[3:])) for md in month_days})
        for year in range(first.year, first.year + _LOOK_AHEAD_YEARS + 1)
        if (day := _date_or_none(year, month, day_of_month)) is not None and day >= first
    ]
    return min(occurrences, default=None)


def _date_or_none(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:  # 29 February of a common year, or a 31st of a short month
        return None
