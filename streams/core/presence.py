"""Where a tag is: deduplicated reads turned into a path of stops, without flapping.

Readers watch places (an entrance, a zone, a store). A tag is *at* a place from the
first read there until it is committed somewhere else; consecutive reads of one
place, on any of its readers and antennas, are one stop. A new place is committed
only once the current place has been silent for ``min_dwell_s`` while the new one
reads the tag, so a tag bouncing between two readers stays where it was.

The open stretch of stops ends when the tag has not been read for
``absence_timeout_s``, or for the shorter ``exit_timeout_s`` after it came back to
an entrance from elsewhere (walking out through a door is the last read there).
Absence has no event, so :func:`expire` is called with an explicit ``now``.

All times are seconds since the epoch (floats), which keeps the state small and
cheap to serialise with msgspec.
"""

from __future__ import annotations

import math

import msgspec

from ...settings import PresenceTuning


class Stop(msgspec.Struct, array_like=True):
    """One place on the path, from its first to its last counted read."""

    place: str
    arrived: float
    left: float

    @property
    def dwell_s(self) -> float:
        return self.left - self.arrived


class Presence(msgspec.Struct):
    """One tag's (or member's) presence. Empty ``stops`` means not in the mall."""

    stops: list[Stop] = []
    #: the place read most recently but not committed yet, with its reads' span
    candidate: Stop | None = None
    #: reads up to here belong to a stretch already closed: they arrived too late
    closed_until: float = -math.inf
    #: dedup: "<epc> <reader>" -> time of the last read that counted
    counted_at: dict[str, float] = {}
    #: counted reads of the open stretch
    reads: int = 0

    @property
    def last_seen(self) -> float:
        """Time of the latest counted read of the open stretch."""
        latest = self.stops[-1].left
        return max(latest, self.candidate.left) if self.candidate else latest


class Stretch(msgspec.Struct, frozen=True):
    """A finished stretch of presence: the path, its counted reads, and the time it was closed at."""

    stops: list[Stop]
    reads: int
    closed_at: float


class Moved(msgspec.Struct, frozen=True):
    """What a call did: ``opened`` a new stretch, ``entered`` a committed stop, ``closed`` the previous stretch."""

    opened: bool = False
    entered: Stop | None = None
    closed: Stretch | None = None


NOTHING = Moved()


def is_fresh(presence: Presence, epc: str, reader_id: str, ts: float, tuning: PresenceTuning) -> bool:
    """Whether this read counts: past the dedup window after the last counted read by the same reader.

    A reader reports its reads in order, so one no later than the last it counted is a repeat:
    the same read delivered again after a crash must not count twice.
    """
    last = presence.counted_at.get(f"{epc} {reader_id}")
    return last is None or ts - last >= tuning.dedup_window_s


def observe(
    presence: Presence, epc: str, reader_id: str, place: str, ts: float, tuning: PresenceTuning
) -> tuple[Presence, Moved]:
    """Apply one read that :func:`is_fresh` accepted. The input state is not modified.

    A read older than the latest one counts for dedup but does not move the tag:
    late evidence must not send it back to where it was.
    """
    if ts <= presence.closed_until:
        return presence, NOTHING
    counted_at = {**presence.counted_at, f"{epc} {reader_id}": ts}
    if not presence.stops:
        return _open(presence, place, ts, counted_at), Moved(opened=True, entered=Stop(place, ts, ts))
    if ts - presence.last_seen >= tuning.absence_timeout_s:
        # a silence this long without a tick: it is split between the finished stretch and the new one
        closed, finished = _close(presence, (presence.last_seen + ts) / 2)
        return _open(closed, place, ts, counted_at), Moved(opened=True, entered=Stop(place, ts, ts), closed=finished)
    reads = presence.reads + 1
    if ts < presence.last_seen:
        return msgspec.structs.replace(presence, counted_at=counted_at, reads=reads), NOTHING
    current = presence.stops[-1]
    if place == current.place:
        stops = [*presence.stops[:-1], Stop(place, current.arrived, ts)]
        return msgspec.structs.replace(
            presence, stops=stops, candidate=None, counted_at=counted_at, reads=reads
        ), NOTHING
    candidate = presence.candidate
    if candidate is None or candidate.place != place:
        candidate = Stop(place, ts, ts)
    else:
        candidate = Stop(place, candidate.arrived, ts)
    moved = msgspec.structs.replace(presence, candidate=candidate, counted_at=counted_at, reads=reads)
    return _settle(moved, ts, tuning)


def expire(presence: Presence, now: float, entrances: frozenset[str], tuning: PresenceTuning) -> tuple[Presence, Moved]:
    """Commit a pending place whose old place fell silent, and close the stretch if the tag is gone."""
    if not presence.stops:
        return presence, NOTHING
    presence, moved = _settle(presence, now, tuning)
    stops = presence.stops
    back_at_door = len(stops) > 1 and stops[-1].place in entrances
    timeout = tuning.exit_timeout_s if back_at_door else tuning.absence_timeout_s
    if now - presence.last_seen < timeout:
        return presence, moved
    closed, finished = _close(presence, now)
    return closed, Moved(closed=finished)


def next_change(presence: Presence, entrances: frozenset[str], tuning: PresenceTuning) -> float:
    """The earliest ``now`` at which :func:`expire` would change something; infinity when not present.

    A stream only needs to call :func:`expire` from then on, so quiet members cost nothing.
    """
    if not presence.stops:
        return math.inf
    settles = presence.stops[-1].left + tuning.min_dwell_s if presence.candidate is not None else math.inf
    stops = presence.stops
    back_at_door = len(stops) > 1 and stops[-1].place in entrances
    timeout = tuning.exit_timeout_s if back_at_door else tuning.absence_timeout_s
    return min(settles, presence.last_seen + timeout)


def _settle(presence: Presence, now: float, tuning: PresenceTuning) -> tuple[Presence, Moved]:
    """Commit the candidate once the current place has been silent for ``min_dwell_s``."""
    candidate = presence.candidate
    if candidate is None or now - presence.stops[-1].left < tuning.min_dwell_s:
        return presence, NOTHING
    stops = [*presence.stops, candidate]
    return msgspec.structs.replace(presence, stops=stops, candidate=None), Moved(entered=candidate)


def _open(presence: Presence, place: str, ts: float, counted_at: dict[str, float]) -> Presence:
    return msgspec.structs.replace(
        presence, stops=[Stop(place, ts, ts)], candidate=None, counted_at=counted_at, reads=1
    )


def _close(presence: Presence, until: float) -> tuple[Presence, Stretch]:
    """End the stretch; reads up to ``until`` are too late to reopen it, and a candidate that never won is dropped."""
    return Presence(closed_until=until), Stretch(presence.stops, presence.reads, until)
