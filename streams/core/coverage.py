"""The periods a counter has already counted, as merged time ranges.

A counter's ticks cover consecutive periods ``[ts - interval_s, ts)``. A re-pushed tick
covers a period counted before, and is recognised by that. Kept tick by tick for the day a
re-push is recognised, those keys grew a mall's footfall state by 2.7 MB a minute at 2,500
ticks/s, until its snapshot outgrew a Kafka message and the worker died (the ten-minute
soak). Kept as ranges, a counter that ticks without gaps is one range, at any rate.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import itemgetter

#: Sorted, disjoint ``[start, end]`` ranges of epoch seconds.
Ranges = list[list[float]]

_start, _end = itemgetter(0), itemgetter(1)


def covered(ranges: Ranges, start: float, end: float) -> bool:
    """Whether ``[start, end)`` lies wholly inside what was counted."""
    if not ranges or start >= ranges[-1][1]:
        return False  # the usual tick: the period after everything counted so far
    index = bisect_right(ranges, start, key=_start) - 1
    return index >= 0 and ranges[index][1] >= end


def cover(ranges: Ranges, start: float, end: float) -> None:
    """Add ``[start, end)``, merged with every range it overlaps or touches."""
    if ranges and ranges[-1][0] <= start <= ranges[-1][1] <= end:
        ranges[-1][1] = end  # the usual tick: it carries on where the newest range ends
        return
    first = bisect_left(ranges, start, key=_end)
    last = bisect_right(ranges, end, key=_start)
    if first < last:
        start, end = min(start, ranges[first][0]), max(end, ranges[last - 1][1])
    ranges[first:last] = [[start, end]]


def forget_before(ranges: Ranges, moment: float) -> None:
    """Drop the ranges that ended before ``moment``."""
    del ranges[: bisect_left(ranges, moment, key=_end)]
