"""Footfall ticks per second through the pure footfall core, roll-ups, occupancy and dwell included.

A mall of 40 counted places (entrances, zones, stores) sends one tick per counter per
minute, as counters do; the clock follows the newest tick, so intervals close and
their rows and occupancy are emitted as they would be live.
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import numpy as np

from .settings import Device, FootfallConfig, Mall, Place, Store
from .streams.core.footfall import FootfallState, apply_tick
from .streams.core.footfall_layout import FootfallLayout
from .streams.records import FootfallTick

ENTRANCES, ZONES, STORES = 6, 4, 30
_OPENING = dt.datetime(2026, 11, 23, 10, tzinfo=ZoneInfo("Asia/Shanghai"))


def bench_mall() -> Mall:
    """A mall with a counter at every place, over three floors."""
    floors = [Place(id=f"L{n}") for n in range(1, 4)]
    return Mall(
        id="bench",
        floors=floors,
        entrances=[Place(id=f"E{n}", floor=floors[n % 3].id) for n in range(ENTRANCES)],
        zones=[Place(id=f"Z{n}", floor=floors[n % 3].id, area_m2=500) for n in range(ZONES)],
        stores=[Store(id=f"S{n}", floor=floors[n % 3].id, area_m2=300) for n in range(STORES)],
        people_counters=[Device(id=f"C-{place}", place=place) for place in
                         [f"E{n}" for n in range(ENTRANCES)] + [f"Z{n}" for n in range(ZONES)]
                         + [f"S{n}" for n in range(STORES)]],
    )


def bench_ticks(mall: Mall, count: int, seed: int = 1) -> list[FootfallTick]:
    """``count`` minute ticks, every counter each minute, with a few people each way."""
    rng = np.random.default_rng(seed)
    counters = [counter.id for counter in mall.people_counters]
    flows = rng.poisson(4, size=(count, 2)).tolist()
    return [FootfallTick(counter_id=counters[n % len(counters)],
                         ts=_OPENING + dt.timedelta(minutes=n // len(counters) + 1),
                         count_in=people_in, count_out=people_out)
            for n, (people_in, people_out) in enumerate(flows)]


def bench_footfall(count: int) -> float:
    """Ticks per second through :func:`apply_tick`, the clock at each tick's own time."""
    mall = bench_mall()
    layout = FootfallLayout.of(mall, FootfallConfig(empties_at=dt.time(22)))
    ticks = bench_ticks(mall, count)
    state = FootfallState()
    started = time.perf_counter()
    for tick in ticks:
        state, _ = apply_tick(state, tick, tick.ts.timestamp(), layout)
    return count / (time.perf_counter() - started)
