"""Staff badge passes: which door a member of staff went through, and which way.

A reader reads a badge several times as its wearer walks by, so reads of one badge at
one reader closer than ``badge_pass_gap_s`` are one pass, and a read no later than the badge's
last read at that reader (redelivered after a crash) is none: passes toggle a badge in and
out, so a read counted twice would turn its wearer around. A reader has no sense of
direction; the wearer's side of the door does: every badge starts the business day
outside, and each pass through a door of an area (the mall's entrances, a store's
door) takes it in if it was out and out if it was in. This needs a reader at every
door staff use into a counted area, which is how staff exclusion is installed anyway.
"""

from __future__ import annotations

import datetime as dt

from ..records import RfidRead
from .footfall_layout import FootfallLayout


class BadgeState:
    """Where each staff badge was last read, and which areas it is inside today."""

    __slots__ = ("inside", "last_read")

    def __init__(self) -> None:
        self.last_read: dict[tuple[str, str], float] = {}
        #: (epc, area) -> business day (ordinal) the badge went in; a badge in since an earlier day is out.
        self.inside: dict[tuple[str, str], int] = {}


def staff_pass(badges: BadgeState, layout: FootfallLayout, read: RfidRead) -> tuple[str, bool] | None:
    """The counter a new staff pass comes off and whether it went in; None for other tags and repeat reads."""
    config = layout.config
    if not read.epc.upper().startswith(config.staff_badge_prefixes) or read.reader_id not in layout.badge_area:
        return None
    at = read.ts.timestamp()
    seen = (read.epc, read.reader_id)
    previous = badges.last_read.get(seen)
    badges.last_read[seen] = at if previous is None else max(at, previous)
    if previous is not None and at - previous < config.badge_pass_gap_s:
        return None
    local = read.ts.astimezone(layout.timezone)
    starts = config.business_day_starts
    day = (local - dt.timedelta(hours=starts.hour, minutes=starts.minute)).date().toordinal()
    where = (read.epc, layout.badge_area[read.reader_id])
    inbound = badges.inside.get(where) != day
    if inbound:
        badges.inside[where] = day
    else:
        del badges.inside[where]
    counter = layout.deducts_at.get(read.reader_id)
    return (counter, inbound) if counter else None
