"""People counters (Xovis, Axis, Milesight VS350) to per-interval footfall deltas.

Counters report cumulative totals; the hub wants people per interval. Each
driver is a pure step: ``(state, payload, received_at, config) -> (state, Decoded)``
where the state holds the last reading of every counter, so the gateway can keep
it in a table and the same step runs unchanged in a test.

The rules, shared by all three protocols:

* The first reading of a counter only sets the baseline and emits nothing: a
  total alone cannot say how much of it the hub already counted, and counting it
  again after a lost state would double count.
* A reading that is not newer than the last one (same or older timestamp) is a
  duplicate or a re-pushed backlog and is skipped. Nothing is lost by skipping
  backfill: the next newer total covers what happened in between.
* A total below the previous one means the counter restarted from zero, so the
  new total is what was counted since. What was counted between the previous
  reading and the restart is unknowable and lost. A uint16 total that drops is a
  rollover instead when counting up through 65535 takes at most
  ``max_rollover_step`` people.
* A reading newer than the last one emits a tick even when nothing was counted,
  so a quiet entrance is told apart from a dead one. Deltas are never negative.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import msgspec

from mallstream.streams.records import FootfallTick, Record

from .normalise import Decoded, Reject, SequenceGap, clock_skew

Direction = Literal["in", "out"]
Count = Annotated[int, msgspec.Meta(ge=0)]
Uint16 = Annotated[int, msgspec.Meta(ge=0, le=65535)]
UINT16_MODULUS = 65536


@dataclass(frozen=True, slots=True)
class Reading:
    """Where the hub stands with one device counter.

    ``ts`` is the time up to which it has been counted; ``value`` its last total
    (None while a device has only sent period counts); ``counted_since`` the
    people already counted from period counts newer than that total.
    """

    ts: dt.datetime
    value: int | None
    counted_since: int = 0


@dataclass(frozen=True, slots=True)
class CounterState:
    """The last reading of every device counter, and the last Xovis package id of every push agent."""

    readings: Mapping[str, Reading] = field(default_factory=dict)
    packages: Mapping[str, int] = field(default_factory=dict)


def cumulative_delta(previous: int, current: int, *, modulus: int | None = None, max_rollover_step: int = 0) -> int:
    """People counted between two totals of one counter; never negative (see the module rules)."""
    if current >= previous:
        return current - previous
    if modulus is not None and current + modulus - previous <= max_rollover_step:
        return current + modulus - previous
    return current


class _Counting:
    """One step's working copy of the readings, and the people it counted per hub counter."""

    def __init__(self, state: CounterState) -> None:
        self.readings = dict(state.readings)
        self._ticks: dict[str, _Tick] = {}

    def total(
        self,
        key: str,
        hub_id: str,
        direction: Direction,
        ts: dt.datetime,
        value: int,
        modulus: int | None = None,
        max_rollover_step: int = 0,
    ) -> None:
        """A cumulative total of one device counter."""
        previous = self.readings.get(key)
        if previous is not None and (ts < previous.ts or (ts == previous.ts and value <= (previous.value or 0))):
            return
        self.readings[key] = Reading(ts, value)
        if previous is not None and previous.value is not None:
            delta = cumulative_delta(previous.value, value, modulus=modulus, max_rollover_step=max_rollover_step)
            self._add(hub_id, direction, previous.ts, ts, max(0, delta - previous.counted_since))

    def period(
        self, key: str, hub_id: str, direction: Direction, ts: dt.datetime, count: int, default_interval: dt.timedelta
    ) -> None:
        """People counted by the device over the period ending at ``ts``."""
        previous = self.readings.get(key)
        if previous is not None and ts <= previous.ts:
            return
        if previous is None:
            self.readings[key] = Reading(ts, None, count)
            self._add(hub_id, direction, ts - default_interval, ts, count)
        else:
            self.readings[key] = Reading(ts, previous.value, previous.counted_since + count)
            self._add(hub_id, direction, previous.ts, ts, count)

    def rebase(self, key: str, ts: dt.datetime, value: int) -> None:
        """The device itself lowered or reset the total: remember it without counting."""
        previous = self.readings.get(key)
        if previous is None or ts >= previous.ts:
            self.readings[key] = Reading(ts, value)

    def _add(self, hub_id: str, direction: Direction, since: dt.datetime, ts: dt.datetime, count: int) -> None:
        tick = self._ticks.setdefault(hub_id, _Tick(since, ts))
        tick.since, tick.until = min(tick.since, since), max(tick.until, ts)
        tick.counts[direction] += count

    def take_ticks(self, received_at: dt.datetime | None) -> list[FootfallTick]:
        """The ticks counted since the last call; skew is left out where no device clock is involved."""
        ticks = [tick.record(hub_id, received_at) for hub_id, tick in self._ticks.items()]
        self._ticks = {}
        return ticks


@dataclass(slots=True)
class _Tick:
    since: dt.datetime
    until: dt.datetime
    counts: dict[Direction, int] = field(default_factory=lambda: {"in": 0, "out": 0})

    def record(self, counter_id: str, received_at: dt.datetime | None) -> FootfallTick:
        return FootfallTick(
            counter_id=counter_id,
            ts=self.until,
            count_in=self.counts["in"],
            count_out=self.counts["out"],
            interval_s=max(1, round((self.until - self.since).total_seconds())),
            clock_skew_s=None if received_at is None else clock_skew(self.until, received_at),
        )


def _json_reject(payload: bytes, error: Exception, what: str) -> Decoded:
    return Decoded(rejects=[Reject(f"not a {what}: {error}", payload)])


# --- Xovis live-data push -------------------------------------------------------------------------

#: Events carrying a counter's new total after people crossed.
XOVIS_COUNTING = frozenset({"COUNT_INCREMENT", "LINE_CROSS_FORWARD", "LINE_CROSS_BACKWARD"})
#: Events where the sensor lowers a total itself; the hub remembers the value without counting.
XOVIS_REBASING = frozenset({"COUNT_RESET", "COUNT_DECREMENT"})


class _XovisAttributes(msgspec.Struct):
    counter_id: int | None = None
    counter_value: Count | None = None


class _XovisEvent(msgspec.Struct):
    type: str
    attributes: _XovisAttributes = msgspec.field(default_factory=_XovisAttributes)


class _XovisFrame(msgspec.Struct):
    time: int | str
    events: list[_XovisEvent] = []


class _XovisPackageInfo(msgspec.Struct):
    id: int
    agent_id: int = 0


class _XovisSensorInfo(msgspec.Struct):
    serial_number: str


class _XovisLiveData(msgspec.Struct):
    package_info: _XovisPackageInfo
    sensor_info: _XovisSensorInfo
    frames: list[_XovisFrame] = []


class _XovisPush(msgspec.Struct):
    live_data: _XovisLiveData


def _xovis_time(value: int | str) -> dt.datetime:
    """A Xovis frame time, UNIX_TIME_MS or RFC 3339 per agent config, in UTC; ValueError otherwise."""
    try:
        if isinstance(value, int):
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        ts = dt.datetime.fromisoformat(value)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time {value!r} is out of range") from exc
    if ts.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    return ts.astimezone(dt.UTC)


def decode_xovis(
    state: CounterState,
    payload: bytes,
    received_at: dt.datetime,
    routes: Mapping[tuple[str, int], tuple[str, Direction]],
) -> tuple[CounterState, Decoded, list[SequenceGap]]:
    """One Xovis live-data push: ticks per hub counter, and the packages missing before it.

    ``routes`` maps (sensor serial, Xovis counter_id) to (hub counter_id, "in"|"out").
    Counters not routed are other logics of the sensor (zones, occupancy) and are
    ignored. A backfill re-push (TIME_RANGE trigger) is accepted and counts nothing twice.
    """
    try:
        push = msgspec.json.decode(payload, type=_XovisPush).live_data
        frames = [(_xovis_time(frame.time), frame) for frame in push.frames]
    except (msgspec.DecodeError, ValueError) as exc:
        return state, _json_reject(payload, exc, "Xovis live-data push"), []
    serial = push.sensor_info.serial_number
    agent = f"xovis:{serial}:{push.package_info.agent_id}"
    package, last_package = push.package_info.id, state.packages.get(agent)
    gaps = []
    if last_package is not None and package > last_package + 1:
        gaps.append(SequenceGap(agent, last_package + 1, package - 1))
    packages = {**state.packages, agent: package if last_package is None else max(package, last_package)}

    counting = _Counting(state)
    rejects = []
    for ts, frame in frames:
        for event in frame.events:
            counter, value = event.attributes.counter_id, event.attributes.counter_value
            route = routes.get((serial, counter)) if counter is not None else None
            if route is None or event.type not in XOVIS_COUNTING | XOVIS_REBASING:
                continue
            key = f"xovis:{serial}:{counter}"
            if event.type == "COUNT_RESET":
                counting.rebase(key, ts, value or 0)
            elif value is None:
                reason = f"Xovis {event.type} of counter {counter} has no counter_value"
                rejects.append(Reject(reason, msgspec.json.encode(event)))
            elif event.type == "COUNT_DECREMENT":
                counting.rebase(key, ts, value)
            else:
                counting.total(key, *route, ts, value)
    new_state = replace(state, readings=counting.readings, packages=packages)
    return new_state, Decoded(events=list(counting.take_ticks(received_at)), rejects=rejects), gaps


# --- Axis people counter live sum -----------------------------------------------------------------


class _AxisLiveSum(msgspec.Struct):
    serial: str
    timestamp: str
    in_: Count = msgspec.field(name="in")
    out: Count


def decode_axis(
    state: CounterState,
    payload: bytes,
    received_at: dt.datetime,
    counters: Mapping[str, str],
    device_tz: dt.tzinfo = dt.UTC,
) -> tuple[CounterState, Decoded]:
    """One Axis live sum (totals since midnight or reset): a tick with the people counted since the last.

    ``counters`` maps the camera serial to the hub counter_id; the timestamp has no
    zone and is read in ``device_tz``, the camera's configured time zone.
    """
    try:
        live = msgspec.json.decode(payload, type=_AxisLiveSum)
        ts = dt.datetime.strptime(live.timestamp, "%Y%m%d%H%M%S").replace(tzinfo=device_tz).astimezone(dt.UTC)
    except (msgspec.DecodeError, ValueError, OverflowError) as exc:
        return state, _json_reject(payload, exc, "Axis live sum")
    hub_id = counters.get(live.serial)
    if hub_id is None:
        return state, Decoded(rejects=[Reject(f"Axis counter {live.serial!r} is not configured", payload)])
    counting = _Counting(state)
    for direction, value in (("in", live.in_), ("out", live.out)):
        counting.total(f"axis:{live.serial}:{direction}", hub_id, direction, ts, value)
    return replace(state, readings=counting.readings), Decoded(events=list(counting.take_ticks(received_at)))


# --- Milesight VS350 ------------------------------------------------------------------------------


class _Vs350History(msgspec.Struct):
    timestamp: Count
    period_in: Count = 0
    period_out: Count = 0
    total_in: Uint16 | None = None
    total_out: Uint16 | None = None


class _Vs350Uplink(msgspec.Struct):
    total_in: Uint16 | None = None
    total_out: Uint16 | None = None
    period_in: Count | None = None
    period_out: Count | None = None
    history: list[_Vs350History] = []


def decode_milesight(
    state: CounterState,
    payload: bytes,
    received_at: dt.datetime,
    counter_id: str,
    *,
    report_interval_s: int = 600,
    max_rollover_step: int = 10_000,
) -> tuple[CounterState, Decoded]:
    """One decoded VS350 uplink (Milesight decoder JSON) of the device the caller knows as ``counter_id``.

    Totals (uint16, wrapping) are the truth when present: they survive lost uplinks.
    Period counts are used where an uplink or history entry has no totals; what they
    count ahead of the next total is not counted again. A live uplink carries no
    device time, so it is stamped ``received_at``; history entries carry their own
    time and come late by design, so no clock skew is reported on VS350 ticks.
    """
    try:
        uplink = msgspec.json.decode(payload, type=_Vs350Uplink)
        history = sorted(
            ((dt.datetime.fromtimestamp(entry.timestamp, dt.UTC), entry) for entry in uplink.history),
            key=lambda item: item[0],
        )
    except (msgspec.DecodeError, ValueError, OverflowError, OSError) as exc:
        return state, _json_reject(payload, exc, "Milesight VS350 uplink")
    counting = _Counting(state)
    default_interval = dt.timedelta(seconds=report_interval_s)

    def count(ts: dt.datetime, totals: tuple[int | None, int | None], periods: tuple[int | None, int | None]) -> None:
        for direction, total, period in zip(("in", "out"), totals, periods, strict=True):
            key = f"milesight:{counter_id}:{direction}"
            if total is not None:
                counting.total(key, counter_id, direction, ts, total, UINT16_MODULUS, max_rollover_step)
            elif period is not None:
                counting.period(key, counter_id, direction, ts, period, default_interval)

    ticks: list[Record] = []
    for ts, entry in history:
        count(ts, (entry.total_in, entry.total_out), (entry.period_in, entry.period_out))
        ticks += counting.take_ticks(None)
    count(received_at.astimezone(dt.UTC), (uplink.total_in, uplink.total_out), (uplink.period_in, uplink.period_out))
    ticks += counting.take_ticks(None)
    return replace(state, readings=counting.readings), Decoded(events=ticks)
