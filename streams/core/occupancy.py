"""Occupancy of an area with drift correction, and its dwell time two ways.

Why occupancy drifts: counters miss people, and rarely the same share both ways. A
missed exit stays in the building forever, so ``ins - outs`` grows through the day
by a few percent of the traffic — at closing, hundreds of "people" in an empty mall.
Clamping at zero hides this only at night; all day long the figure is too high.

The correction (after Irisys): the mall empties at closing, so over a whole day true
ins equal true outs, and the counted ratio ``ins / outs`` measures the imbalance of
the counters. Each area keeps an *exit scale*, the traffic-weighted ratio of past
days (``Σ wᵏ·ins / Σ wᵏ·outs``, older days weighing ``drift_memory`` times less), and
counts every exit as ``exit_scale`` exits. Live occupancy is then right all day long
as soon as one day has been seen, not only at night. At ``empties_at`` each area is
reconciled: what is left is the residual drift, reported with the day's figures, the
day teaches the exit scale, and occupancy restarts from 0. Days too quiet to measure,
or whose ratio is implausible (a counter down half the day), teach nothing. The
imbalance is put on exits because that is where it usually lives: groups leave
together and closing crowds jam the doors. Occupancy never goes negative: what
little the scale overshoots is held at zero, which matters only in an empty mall.

Dwell, two ways, both over the day so far:

* Little's law: mean dwell W = L / λ, i.e. the time integral of occupancy divided by
  the arrivals. Occupancy holds its value from one interval's end to the next, so a
  visit from interval a to interval c counts (c - a) intervals, on average its length.
* Flow matching: arrivals queue first in, first out, and each exit takes the oldest
  arrival still inside; dwell is exit time minus arrival time. This gives the length
  of the visits that ended in each interval, which Little's law cannot.
"""

from __future__ import annotations

import datetime as dt
from collections import deque

from ..records import Record

#: Counted ins / outs outside this range mean a broken counter, not a drift to learn.
PLAUSIBLE_EXIT_SCALE = (0.5, 2.0)


# frozen=True restates what Record passes down (msgspec inherits it), for type checkers, which do not see that
class AreaRow(Record, tag="area_occupancy", frozen=True):
    """An area at the end of one interval. ``dwell_s`` is the mean length of the visits that ended in it."""

    mall_id: str
    level: str
    key: str
    start: dt.datetime
    interval_s: int
    occupancy: int
    occupancy_uncorrected: int
    density: float | None
    departures: float
    dwell_s: float | None


class AreaDay(Record, tag="area_day", frozen=True):
    """An area reconciled when the mall empties: the day's flows, the drift left over, and its dwell."""

    mall_id: str
    level: str
    key: str
    closed_at: dt.datetime
    visitors_in: int
    visitors_out_counted: int
    residual: float
    exit_scale_used: float
    exit_scale_next: float
    dwell_littles_s: float | None
    dwell_matched_s: float | None


class AreaState:
    """Running occupancy and dwell figures of one area, and what past days taught about its counters."""

    __slots__ = (
        "day_in",
        "day_out",
        "departures",
        "dwell_seconds",
        "exit_scale",
        "inside",
        "last_end",
        "occupancy",
        "occupancy_seconds",
        "past_in",
        "past_out",
        "uncorrected",
    )

    def __init__(self) -> None:
        self.exit_scale = 1.0
        self.past_in = 0.0
        self.past_out = 0.0
        self.start_day()

    def start_day(self) -> None:
        """Empty the area and forget the day's flows; what past days taught is kept."""
        self.occupancy = 0.0
        self.uncorrected = 0
        self.day_in = 0
        self.day_out = 0
        self.occupancy_seconds = 0.0
        self.last_end: float | None = None
        self.inside: deque[list[float]] = deque()  # [arrival time, people still inside] in arrival order
        self.departures = 0.0
        self.dwell_seconds = 0.0


def add_flows(area: AreaState, visitors_in: int, visitors_out: int) -> None:
    """Counts that change the occupancy now, without a time of their own (late corrections)."""
    area.day_in += visitors_in
    area.day_out += visitors_out
    area.uncorrected += visitors_in - visitors_out
    area.occupancy = max(0.0, area.occupancy + visitors_in - area.exit_scale * visitors_out)


def close_interval(
    area: AreaState, start: float, end: float, visitors_in: int, visitors_out: int
) -> tuple[float, float | None]:
    """Apply one interval's flows; return the departures matched in it and their mean dwell."""
    if area.last_end is not None:
        area.occupancy_seconds += area.occupancy * (end - area.last_end)
    area.last_end = end
    add_flows(area, visitors_in, visitors_out)
    middle = (start + end) / 2
    if visitors_in > 0:
        area.inside.append([middle, float(visitors_in)])
    leaving = area.exit_scale * visitors_out
    matched = dwell = 0.0
    while leaving > 1e-9 and area.inside:
        oldest = area.inside[0]
        taken = min(leaving, oldest[1])
        matched += taken
        dwell += taken * (middle - oldest[0])
        oldest[1] -= taken
        leaving -= taken
        if oldest[1] <= 1e-9:
            area.inside.popleft()
    area.departures += matched
    area.dwell_seconds += dwell
    return matched, dwell / matched if matched else None


def dwell_estimates(area: AreaState) -> tuple[float | None, float | None]:
    """Mean dwell so far today, by Little's law and by matched flows; None before anyone came or left."""
    littles = area.occupancy_seconds / area.day_in if area.day_in > 0 else None
    matched = area.dwell_seconds / area.departures if area.departures else None
    return littles, matched


def reconcile(
    area: AreaState,
    mall_id: str,
    key: tuple[str, str],
    closed_at: dt.datetime,
    drift_memory: float,
    min_day_visitors: int,
) -> AreaDay:
    """The area is empty now: report the day, learn the exit scale from it, and restart from 0."""
    littles, matched = dwell_estimates(area)
    used = area.exit_scale
    low, high = PLAUSIBLE_EXIT_SCALE
    if area.day_in >= min_day_visitors and area.day_out > 0 and low <= area.day_in / area.day_out <= high:
        area.past_in = drift_memory * area.past_in + area.day_in
        area.past_out = drift_memory * area.past_out + area.day_out
        area.exit_scale = area.past_in / area.past_out
    day = AreaDay(
        mall_id=mall_id,
        level=key[0],
        key=key[1],
        closed_at=closed_at,
        visitors_in=area.day_in,
        visitors_out_counted=area.day_out,
        residual=area.occupancy,
        exit_scale_used=used,
        exit_scale_next=area.exit_scale,
        dwell_littles_s=littles,
        dwell_matched_s=matched,
    )
    area.start_day()
    return day
