"""Footfall and parking states as msgpack bytes, for the agents' faust tables.

The states are plain Python objects tuned for the cores (dicts keyed by tuples, sets,
deques); here they become nested lists and back. Insertion order is kept, because the
footfall core forgets its oldest staff passes first.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from typing import Any

import msgspec

from .coverage import Ranges, cover
from .footfall import FootfallState, _Interval
from .occupancy import AreaState
from .parking import CarParkState, ParkingState

_encoder = msgspec.msgpack.Encoder()
#: AreaState's fields in a fixed order; ``inside`` is a deque of [arrival, people].
_AREA_FIELDS = AreaState.__slots__
_ParkingSnapshot = dict[str, tuple[dict[str, dt.datetime], dict[str, dt.datetime], bool]]
_parking_decoder = msgspec.msgpack.Decoder(_ParkingSnapshot)


def footfall_to_bytes(state: FootfallState) -> bytes:
    areas = [
        [
            level,
            key,
            *(
                list(value) if name == "inside" else value
                for name, value in ((name, getattr(area, name)) for name in _AREA_FIELDS)
            ),
        ]
        for (level, key), area in state.areas.items()
    ]
    return _encoder.encode(
        [
            state.now,
            state.closed_until,
            state.next_reset,
            [[start, interval.counts, interval.transactions] for start, interval in state.open.items()],
            [[counter, ranges] for counter, ranges in state.counted.items()],
            [[counter, start, waiting] for (counter, start), waiting in state.uncounted_staff.items()],
            areas,
            [[epc, reader, at] for (epc, reader), at in state.badges.last_read.items()],
            [[epc, area, day] for (epc, area), day in state.badges.inside.items()],
            [[txn_id, at] for txn_id, at in state.sales.items()],
        ]
    )


def _counted_from_tick_keys(seen: list[Any]) -> dict[str, Ranges]:
    """A snapshot from before the ranges kept (interval start, [[counter, ts]...]): each tick's period began at or
    after its interval's start, so [start, ts] covers it, and a re-push of it is still recognised.

    ``seen`` is that part as msgpack decoded it: [[start, [[counter, ts], ...]], ...]."""
    counted: dict[str, Ranges] = {}
    for start, keys in seen:
        for counter, ts in keys:
            cover(counted.setdefault(counter, []), start, ts)
    return counted


def footfall_from_bytes(data: bytes) -> FootfallState:
    # a state written before sales were remembered has no tenth part
    (now, closed_until, next_reset, open_intervals, counted, uncounted, areas, last_read, inside, *sales) = (
        msgspec.msgpack.decode(data)
    )
    state = FootfallState()
    state.now, state.closed_until, state.next_reset = now, closed_until, next_reset
    for start, counts, transactions in open_intervals:
        interval = state.open[start] = _Interval()
        interval.counts, interval.transactions = counts, transactions
    state.counted = dict(counted) if not counted or isinstance(counted[0][0], str) else _counted_from_tick_keys(counted)
    state.uncounted_staff = {(counter, start): waiting for counter, start, waiting in uncounted}
    for level, key, *values in areas:
        area = state.areas[(level, key)] = AreaState()
        for name, value in zip(_AREA_FIELDS, values, strict=False):
            setattr(area, name, deque(value) if name == "inside" else value)
    state.badges.last_read = {(epc, reader): at for epc, reader, at in last_read}
    state.badges.inside = {(epc, area): day for epc, area, day in inside}
    state.sales = {txn_id: at for txn_id, at in (sales[0] if sales else [])}
    return state


def parking_to_bytes(state: ParkingState) -> bytes:
    return _encoder.encode(
        {park_id: (park.parked, park.last_exit, park.alerting) for park_id, park in state.car_parks.items()}
    )


def parking_from_bytes(data: bytes) -> ParkingState:
    state = ParkingState()
    for park_id, (parked, last_exit, alerting) in _parking_decoder.decode(data).items():
        park = state.car_parks[park_id] = CarParkState()
        park.parked, park.last_exit, park.alerting = parked, last_exit, alerting
    return state
