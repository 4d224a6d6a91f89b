"""Footfall benchmarks: ticks per second through the pure core, and report query latency over a month.

``bench_footfall``: a mall of 40 counted places (entrances, zones, stores) sends one tick
per counter per minute, as counters do; the clock follows the newest tick, so intervals
close and their rows and occupancy are emitted as they would be live.

``bench_footfall_queries``: a month of the example mall (a counter at every entrance,
zone and store) goes through the same core, and its ticks and rows are written straight
into a scratch chdb, so the materialized views build the minute, hourly and daily
roll-ups as in production; then each query the reports run is timed::

    python -m benchmarks.bench_footfall --days 30
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from mallstream.reports import ReportWindow, conversion_sql, footfall_sql, occupancy_sql, period_sql, visitors_sql
from mallstream.settings import ClickHouse, Device, FootfallConfig, Mall, Place, Store, load
from mallstream.sinks.places import PLACES_COLUMNS, place_rows
from mallstream.sinks.tables import (
    AREA_DAYS_TABLE,
    AREA_OCCUPANCY_TABLE,
    FOOTFALL_ROLLUPS_TABLE,
    FOOTFALL_TICKS_TABLE,
    SinkTable,
)
from mallstream.sinks.warehouse import Warehouse, open_warehouse
from mallstream.streams.core.footfall import FootfallState, RollupRow, apply_tick
from mallstream.streams.core.footfall_layout import FootfallLayout
from mallstream.streams.core.occupancy import AreaDay, AreaRow
from mallstream.streams.records import FootfallTick

ENTRANCES, ZONES, STORES = 6, 4, 30
_OPENING = dt.datetime(2026, 11, 23, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "mall.example.yaml"
#: People per counter per minute in each local hour, as on a weekday; counters tick all day and night.
_HOURLY_PEOPLE = (0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 5, 7, 6, 4, 4, 5, 6, 8, 7, 5, 3, 1, 0)
_TABLE_OF = {RollupRow: FOOTFALL_ROLLUPS_TABLE, AreaRow: AREA_OCCUPANCY_TABLE, AreaDay: AREA_DAYS_TABLE}
#: Rows per insert block.
_CHUNK = 200_000


def bench_mall() -> Mall:
    """A mall with a counter at every place, over three floors."""
    floors = [Place(id=f"L{n}") for n in range(1, 4)]
    return Mall(
        id="bench",
        floors=floors,
        entrances=[Place(id=f"E{n}", floor=floors[n % 3].id) for n in range(ENTRANCES)],
        zones=[Place(id=f"Z{n}", floor=floors[n % 3].id, area_m2=500) for n in range(ZONES)],
        stores=[Store(id=f"S{n}", floor=floors[n % 3].id, area_m2=300) for n in range(STORES)],
        people_counters=[
            Device(id=f"C-{place}", place=place)
            for place in [f"E{n}" for n in range(ENTRANCES)]
            + [f"Z{n}" for n in range(ZONES)]
            + [f"S{n}" for n in range(STORES)]
        ],
    )


def bench_ticks(mall: Mall, count: int, seed: int = 1) -> list[FootfallTick]:
    """``count`` minute ticks, every counter each minute, with a few people each way."""
    rng = np.random.default_rng(seed)
    counters = [counter.id for counter in mall.people_counters]
    flows = rng.poisson(4, size=(count, 2)).tolist()
    return [
        FootfallTick(
            counter_id=counters[n % len(counters)],
            ts=_OPENING + dt.timedelta(minutes=n // len(counters) + 1),
            count_in=people_in,
            count_out=people_out,
        )
        for n, (people_in, people_out) in enumerate(flows)
    ]


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


def counted_example_mall() -> Mall:
    """The example mall with a people counter at every entrance, zone and store."""
    mall = load(EXAMPLE_CONFIG).malls[0]
    places = [place.id for place in (*mall.entrances, *mall.zones, *mall.stores)]
    return mall.model_copy(update={"people_counters": [Device(id=f"C-{place}", place=place) for place in places]})


def month_of_ticks(mall: Mall, first_day: dt.date, days: int, seed: int = 3) -> Iterator[FootfallTick]:
    """One tick per counter per minute, day after day, more people on weekends."""
    rng = np.random.default_rng(seed)
    zone = ZoneInfo(mall.timezone)
    counters = [counter.id for counter in mall.people_counters]
    for day in range(days):
        midnight = dt.datetime.combine(first_day + dt.timedelta(days=day), dt.time(0), zone)
        busier = 1.4 if midnight.weekday() >= 5 else 1.0
        for minute in range(24 * 60):
            mean = _HOURLY_PEOPLE[minute // 60] * busier
            ends = midnight + dt.timedelta(minutes=minute + 1)
            flows = rng.poisson(mean, size=(len(counters), 2)).tolist()
            for counter, (people_in, people_out) in zip(counters, flows, strict=False):
                yield FootfallTick(
                    counter_id=counter,
                    ts=ends,
                    count_in=people_in,
                    count_out=people_out,
                    interval_s=60,
                    mall_id=mall.id,
                )


def write_month(warehouse: Warehouse, mall: Mall, first_day: dt.date, days: int) -> dict[str, int]:
    """Ticks and the footfall core's rows for ``days`` days, inserted in blocks; returns rows per table."""
    layout = FootfallLayout.of(mall)
    state = FootfallState()
    pending: dict[str, tuple[SinkTable, list[tuple]]] = {
        table.name: (table, []) for table in (FOOTFALL_TICKS_TABLE, *_TABLE_OF.values())
    }
    written = dict.fromkeys(pending, 0)

    def flush(name: str) -> None:
        table, rows = pending[name]
        warehouse.insert(table.name, rows, table.columns)
        written[name] += len(rows)
        rows.clear()

    for tick in month_of_ticks(mall, first_day, days):
        pending[FOOTFALL_TICKS_TABLE.name][1].append(FOOTFALL_TICKS_TABLE.row(tick))
        state, outputs = apply_tick(state, tick, tick.ts.timestamp(), layout)
        for output in outputs:
            table = _TABLE_OF[type(output)]
            pending[table.name][1].append(table.row(output))
        for name, (_, rows) in pending.items():
            if len(rows) >= _CHUNK:
                flush(name)
    for name in pending:
        flush(name)
    return written


def report_queries(mall: Mall, first_day: dt.date, days: int) -> dict[str, str]:
    """The SQL each report runs, over one day or over the whole month."""
    zone = ZoneInfo(mall.timezone)
    start = dt.datetime.combine(first_day, dt.time(0), zone)
    month = ReportWindow(mall.id, mall.timezone, start, start + dt.timedelta(days=days))
    day = ReportWindow(
        mall.id, mall.timezone, start + dt.timedelta(days=days // 2), start + dt.timedelta(days=days // 2 + 1), 15
    )
    mall_id, *bounds = day.bounds()
    _, *month_bounds = month.bounds()
    return {
        "people per counter, 15 min, one day (footfall_minute)": footfall_sql(
            mall_id, mall.timezone, *bounds, 15, "counter"
        ),
        "visitors per entrance, 15 min, one day": visitors_sql(mall_id, mall.timezone, *bounds, 15, "entrance"),
        "visitors per entrance, 15 min, month": visitors_sql(mall_id, mall.timezone, *month_bounds, 15, "entrance"),
        "visitors per entrance, hourly, month": visitors_sql(mall_id, mall.timezone, *month_bounds, 60, "entrance"),
        "daily totals and peak hour, month": period_sql(month, "day", "mall"),
        "daily totals and peak 15 min, month": period_sql(
            dataclasses.replace(month, interval_minutes=15), "day", "entrance"
        ),
        "day-of-week share and per-entrance average, by week": period_sql(month, "week", "entrance"),
        "per-entrance average per day, by month": period_sql(month, "month", "entrance"),
        "conversion per store, hourly, month": conversion_sql(month),
        "occupancy per store, 15 min, one day": occupancy_sql(day, "store"),
        "occupancy per store, hourly, month": occupancy_sql(month, "store"),
    }


def bench_footfall_queries(days: int = 30, repeats: int = 5) -> tuple[dict[str, int], list[tuple[str, float, int]]]:
    """Rows written per table, and (query, median ms over ``repeats``, rows returned) for each report query."""
    mall = counted_example_mall()
    first_day = dt.date(2026, 11, 1)
    with tempfile.TemporaryDirectory() as scratch:
        warehouse = open_warehouse(ClickHouse(path=Path(scratch) / "ch"))
        warehouse.migrate()
        written = write_month(warehouse, mall, first_day, days)
        settings = load(EXAMPLE_CONFIG)
        warehouse.insert("places", place_rows(settings.model_copy(update={"malls": [mall]}), 1), PLACES_COLUMNS)
        timings = []
        for name, sql in report_queries(mall, first_day, days).items():
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                _, rows = warehouse.query(sql)
                seconds.append(time.perf_counter() - started)
            timings.append((name, statistics.median(seconds) * 1000, len(rows)))
        warehouse.close()
    return written, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of minute data")
    parser.add_argument("--repeats", type=int, default=5, help="runs per query (the median is printed)")
    args = parser.parse_args()
    started = time.perf_counter()
    written, timings = bench_footfall_queries(args.days, args.repeats)
    print(
        f"wrote {', '.join(f'{rows:,} {table}' for table, rows in written.items())} "
        f"in {time.perf_counter() - started:.0f} s"
    )
    for name, millis, rows in timings:
        print(f"{name:<58} {millis:>8.1f} ms {rows:>7,} rows")


if __name__ == "__main__":
    main()
