"""History survives retention: gate events and counter ticks one and two years old (and recent), stored through
the table sinks into real chdb, every table merged with its TTLs applied, then the reports run as a user would.

Each report must answer from the finest grain whose rows still cover the range and say which it used.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
import yaml

from mallstream.dashboards.check import panel_results
from mallstream.dashboards.grafana import PROVISIONING, read_boards
from mallstream.privacy import Pseudonym
from mallstream.reports import year_back
from mallstream.settings import load
from mallstream.sinks.clickhouse import SourcePosition, TableSink, sourced
from mallstream.sinks.migrations import MIGRATIONS, apply_migrations
from mallstream.sinks.migrations.v013_parking_hourly import MIGRATION as PARKING_HOURLY
from mallstream.sinks.places import PLACES_COLUMNS, place_rows
from mallstream.sinks.tables import (
    FOOTFALL_TICKS_TABLE,
    PARKING_OCCUPANCY_TABLE,
    PARKING_STAYS_TABLE,
    RETENTION,
    SinkTable,
)
from mallstream.sinks.warehouse import Warehouse, open_warehouse
from mallstream.streams.core.parking import (
    OccupancyBatch,
    ParkingLayout,
    ParkingOccupancy,
    ParkingState,
    ParkingStay,
    apply_parking_event,
)
from mallstream.streams.records import FootfallTick, ParkingEvent
from tests.conftest import cli, write_config

pytestmark = pytest.mark.timeout(300)

NOW = dt.datetime.now(dt.UTC)
#: Local days of each era: the first three of two years ago are events, a day without any, events again.
TODAY = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date()
TWO_YEARS = [TODAY - dt.timedelta(days=730 + n) for n in (0, 1, 2, 3)][::-1]
QUIET_DAY = TWO_YEARS[2]
ONE_YEAR = [TODAY - dt.timedelta(days=365), TODAY - dt.timedelta(days=364)]
RECENT = [TODAY - dt.timedelta(days=10), TODAY - dt.timedelta(days=9)]
CAR_PARKS = {"P-B2": 450, "P-L3": 200}


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Iterator[tuple[Path, list[ParkingEvent], list[FootfallTick]]]:
    """The hub's tables filled through the sinks, then merged so every TTL has acted; the engine is closed after."""
    tmp_path = tmp_path_factory.mktemp("grains")
    config = write_config(tmp_path, "127.0.0.1:9")  # no broker: the reports open the engine themselves
    data = yaml.safe_load(config.read_text())
    data["malls"][0]["car_parks"].append(
        {
            "id": "P-L3",
            "capacity": CAR_PARKS["P-L3"],
            "gates": [
                {
                    "id": "G-L3",
                    "place": "P-L3",
                    "protocol": "hikvision-isapi",
                    "address": "/push/l3",
                    "direction": "entry",
                }
            ],
        }
    )
    config.write_text(yaml.safe_dump(data))
    settings = load(config)
    mall = settings.malls[0]
    zone = ZoneInfo(mall.timezone)
    events = gate_events(zone, random.Random(7))
    ticks = counter_ticks(zone, [counter.id for counter in mall.people_counters], random.Random(8))
    warehouse = open_warehouse(settings.clickhouse)
    try:
        warehouse.migrate()
        warehouse.insert("places", place_rows(settings, 1), PLACES_COLUMNS)
        occupancy, stays = through_the_parking_core(events, ParkingLayout.of(mall))
        pseudonym = Pseudonym.of(settings)
        shuffled = random.Random(9)
        # the rows come in any order and in many batches: the hour's end is still its last gate event's
        sink_in_batches(warehouse, PARKING_OCCUPANCY_TABLE, [OccupancyBatch([row]) for row in occupancy], shuffled)
        sink_in_batches(warehouse, PARKING_STAYS_TABLE, stays, shuffled, pseudonym)
        sink_in_batches(warehouse, FOOTFALL_TICKS_TABLE, ticks, shuffled)
        _, tables = warehouse.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree'",
            {"db": warehouse.database},
        )
        for (table,) in tables:
            warehouse.command(f"OPTIMIZE TABLE {{db}}.{table} FINAL")
        _, kept = warehouse.query("SELECT countIf(ts < now() - INTERVAL 90 DAY), count() FROM {db}.parking_occupancy")
        assert kept[0][0] == 0 < kept[0][1], "the TTL deleted the old gate-event rows, not the recent ones"
    finally:
        warehouse.close()
    return config, events, ticks


def at(zone: ZoneInfo, day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), zone)


def gate_events(zone: ZoneInfo, rand: random.Random) -> list[ParkingEvent]:
    """Busy days of visits; cars parked overnight (one over the quiet day); a burst of cars in one second."""
    visits = []
    days = [day for day in (*TWO_YEARS, *ONE_YEAR, *RECENT) if day != QUIET_DAY]
    for car_park in CAR_PARKS:
        for day in days:
            for _ in range(rand.randint(20, 40)):
                entry = at(zone, day, 8) + dt.timedelta(seconds=rand.randint(0, 12 * 3600))
                visits.append((car_park, entry, entry + dt.timedelta(seconds=rand.randint(600, 5 * 3600))))
            for _ in range(rand.randint(2, 5) if day + dt.timedelta(days=1) != QUIET_DAY else 0):  # over midnight
                entry = at(zone, day, 22, rand.randint(0, 59), 7)
                visits.append((car_park, entry, at(zone, day + dt.timedelta(days=1), 1, rand.randint(0, 59), 11)))
        burst = at(zone, TWO_YEARS[3], 10, 30, 5)
        visits += [(car_park, burst, burst + dt.timedelta(hours=2, seconds=n)) for n in range(25)]
        visits.append((car_park, at(zone, TWO_YEARS[1], 20, 5), at(zone, TWO_YEARS[3], 9, 15)))  # over the quiet day
    events = []
    for number, (car_park, entry, exit) in enumerate(visits):
        plate = f"{car_park}-{number:05d}"
        events += [
            ParkingEvent(
                gate_id="G",
                car_park_id=car_park,
                plate=plate,
                direction="entry",
                ts=entry,
                mall_id="sh-xujiahui",
                event_id=f"{plate}-in",
            ),
            ParkingEvent(
                gate_id="G",
                car_park_id=car_park,
                plate=plate,
                direction="exit",
                ts=exit,
                mall_id="sh-xujiahui",
                event_id=f"{plate}-out",
            ),
        ]
    return sorted(events, key=lambda event: (event.ts, event.event_id))


def counter_ticks(zone: ZoneInfo, counters: list[str], rand: random.Random) -> list[FootfallTick]:
    """Every 5 minutes from 08:00 to 22:00 on the busy days, with a rush of people at 12:00."""
    ticks = []
    days = [day for day in (*TWO_YEARS, *ONE_YEAR, *RECENT) if day != QUIET_DAY]
    for counter in counters:
        for day in days:
            for step in range(1, 14 * 12 + 1):
                ts = at(zone, day, 8) + dt.timedelta(minutes=5 * step)
                rush = 200 if ts.hour == 12 else 0
                ticks.append(
                    FootfallTick(
                        counter_id=counter,
                        ts=ts,
                        count_in=rand.randint(0, 30) + rush,
                        count_out=rand.randint(0, 30),
                        interval_s=300,
                        mall_id="sh-xujiahui",
                        event_id=f"{counter}@{ts.isoformat()}",
                    )
                )
    return ticks


def through_the_parking_core(
    events: list[ParkingEvent], layout: ParkingLayout
) -> tuple[list[ParkingOccupancy], list[ParkingStay]]:
    """What the parking agent emits for the events: occupancy rows named by their gate event, and stays."""
    state, occupancy, stays = ParkingState(), [], []
    for event in events:
        state, outputs = apply_parking_event(state, event, event.ts, layout)
        for output in outputs:
            if isinstance(output, ParkingOccupancy):
                occupancy.append(msgspec.structs.replace(output, cause=event.event_id))
            elif isinstance(output, ParkingStay):
                stays.append(output)
    return occupancy, stays


def sink_in_batches(
    warehouse: Warehouse, table: SinkTable, records: list, rand: random.Random, pseudonym: Pseudonym | None = None
) -> None:
    records = records[:]
    rand.shuffle(records)
    sink = TableSink(warehouse, table.name, table.columns)
    for first in range(0, len(records), 500):
        rows = [row for record in records[first : first + 500] for row in table.rows(record, pseudonym)]
        sink.write([sourced(row, SourcePosition(table.name, 0, first + n)) for n, row in enumerate(rows)])


def report(config: Path, *args: str) -> list[dict]:
    return json.loads(cli(config, "report", *args, "--format", "json").stdout)


def window(days: list[dt.date]) -> tuple[str, ...]:
    return "--from", str(days[0]), "--to", str(days[-1] + dt.timedelta(days=1))


def parking_days(events: list[ParkingEvent], zone: ZoneInfo, days: list[dt.date]) -> dict[tuple[str, str], tuple]:
    """(car park, local day) -> occupancy at the day's end, peak (the day's start included), entries, exits."""
    truth = {}
    for car_park in CAR_PARKS:
        mine = [event for event in events if event.car_park_id == car_park]
        level = 0
        for day in days:
            start, end = at(zone, day, 0), at(zone, day + dt.timedelta(days=1), 0)
            peak, entries, exits = level, 0, 0
            for event in mine:
                if start <= event.ts < end:
                    entering = event.direction == "entry"
                    level += 1 if entering else -1
                    entries, exits = entries + entering, exits + (not entering)
                    peak = max(peak, level)
            truth[(car_park, f"{day} 00:00:00")] = (level, peak, entries, exits)
    return truth


def counter_intervals(ticks: list[FootfallTick], zone: ZoneInfo, minutes: int, days: list[dt.date]) -> dict:
    """(counter, local interval start) -> (in, out): a tick counts the interval that ends at its time."""
    sums: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for tick in ticks:
        began = (tick.ts - dt.timedelta(seconds=tick.interval_s)).astimezone(zone)
        if began.date() not in days:
            continue
        into_day = began.hour * 60 + began.minute
        start = dt.datetime.combine(began.date(), dt.time()) + dt.timedelta(minutes=into_day // minutes * minutes)
        sums[(tick.counter_id, str(start))][0] += tick.count_in
        sums[(tick.counter_id, str(start))][1] += tick.count_out
    return {key: tuple(flows) for key, flows in sums.items()}


def test_parking_two_years_back_is_answered_by_the_hour_with_each_days_end_peak_entries_and_exits(history):
    config, events, _ = history
    zone = ZoneInfo(load(config).malls[0].timezone)
    days = report(config, "parking", *window(TWO_YEARS), "--interval", "1d")
    assert days, "the gate-event rows of two years ago are gone: the report reads the hourly roll-up"
    assert {row["grain"] for row in days} == {"hour"}
    got = {
        (row["car_park"], row["interval_start"]): (
            row["occupancy_end"],
            row["occupancy_peak"],
            row["entries"],
            row["exits"],
        )
        for row in days
    }
    truth = parking_days(events, zone, TWO_YEARS)
    assert got == truth
    quiet = [truth[(car_park, f"{QUIET_DAY} 00:00:00")] for car_park in CAR_PARKS]
    assert all(end == peak > 0 and (entries, exits) == (0, 0) for end, peak, entries, exits in quiet), (
        "a day without gate events keeps the cars parked over it"
    )
    assert {row["capacity"] for row in days} == set(CAR_PARKS.values())

    year = report(config, "parking", *window(ONE_YEAR), "--interval", "1d")
    assert {
        (row["car_park"], row["interval_start"]): (
            row["occupancy_end"],
            row["occupancy_peak"],
            row["entries"],
            row["exits"],
        )
        for row in year
    } == parking_days(events, zone, ONE_YEAR)


def test_a_finer_interval_than_the_rows_kept_is_answered_at_the_grain_kept_and_says_so(history):
    config, events, _ = history
    quarters = report(config, "parking", *window(TWO_YEARS), "--interval", "15m")
    assert {row["grain"] for row in quarters} == {"hour"}
    assert {row["interval_start"][14:16] for row in quarters} == {"00"}, "answered by the hour"
    table = cli(config, "report", "parking", *window(TWO_YEARS), "--interval", "15m").stdout
    assert table.splitlines()[0] == (
        "grain: hour (15-minute intervals asked; gate event rows are kept 90 days, "
        "so this range is answered by the hour)"
    )
    # recent gate events are still there: 15 minutes from them; whole days from the hours
    recent = report(config, "parking", *window(RECENT), "--interval", "15m")
    assert {row["grain"] for row in recent} == {"gate event"}
    assert {row["interval_start"][14:16] for row in recent} == {"00", "15", "30", "45"}
    zone = ZoneInfo(load(config).malls[0].timezone)
    by_day = report(config, "parking", *window(RECENT), "--interval", "1d")
    assert {row["grain"] for row in by_day} == {"hour"}
    truth = parking_days(events, zone, RECENT)
    assert {
        (row["car_park"], row["interval_start"]): (
            row["occupancy_end"],
            row["occupancy_peak"],
            row["entries"],
            row["exits"],
        )
        for row in by_day
    } == truth
    summed = defaultdict(lambda: [0, 0])
    for row in recent:
        summed[(row["car_park"], row["interval_start"][:10] + " 00:00:00")][0] += row["entries"]
        summed[(row["car_park"], row["interval_start"][:10] + " 00:00:00")][1] += row["exits"]
    assert {key: tuple(flows) for key, flows in summed.items()} == {key: figures[2:] for key, figures in truth.items()}


def test_footfall_per_counter_by_hour_and_day_survives_the_minute_tables_ttl(history):
    config, _, ticks = history
    zone = ZoneInfo(load(config).malls[0].timezone)
    for interval, minutes in (("1h", 60), ("1d", 1440)):
        found = report(config, "footfall", "--by", "counter", *window(TWO_YEARS), "--interval", interval)
        assert {row["grain"] for row in found} == {"hour"}
        assert {(row["place"], row["interval_start"]): (row["in"], row["out"]) for row in found} == counter_intervals(
            ticks, zone, minutes, TWO_YEARS
        ), interval
    quarters = report(config, "footfall", "--by", "counter", *window(ONE_YEAR), "--interval", "15m")
    assert {row["grain"] for row in quarters} == {"hour"}
    assert {(row["place"], row["interval_start"]): (row["in"], row["out"]) for row in quarters} == counter_intervals(
        ticks, zone, 60, ONE_YEAR
    )
    recent = report(config, "footfall", "--by", "counter", *window(RECENT), "--interval", "15m")
    assert {row["grain"] for row in recent} == {"minute"}
    assert {(row["place"], row["interval_start"]): (row["in"], row["out"]) for row in recent} == counter_intervals(
        ticks, zone, 15, RECENT
    )


def test_every_ttl_deletes_only_rows_a_coarser_roll_up_carries_or_says_why_not(tmp_path):
    warehouse = open_warehouse(load(write_config(tmp_path, "127.0.0.1:9")).clickhouse)
    try:
        warehouse.migrate()
        _, tables = warehouse.query(
            "SELECT name, engine_full, create_table_query FROM system.tables WHERE database = {db:String}",
            {"db": warehouse.database},
        )
    finally:
        warehouse.close()
    ttls = {
        name: int(days) for name, engine, _ in tables for days in re.findall(r"\bTTL .*?toIntervalDay\((\d+)\)", engine)
    }
    assert ttls == {name: kept.days for name, kept in RETENTION.items()}
    feeds = defaultdict(set)  # table -> the tables a materialized view fills from it
    for _name, _, query in tables:
        found = re.search(r" TO \w+\.(\w+) .* FROM \w+\.(\w+)", query)
        if found:
            feeds[found[2]].add(found[1])
    sources = {table: {source for source, targets in feeds.items() if table in targets} for table in ttls}
    for table, kept in RETENTION.items():
        assert kept.carried_by or kept.why, table
        for carrier in kept.carried_by:
            assert carrier not in ttls, f"{carrier} carries {table} but has a TTL of its own"
            assert carrier in feeds[table] or any(carrier in feeds[source] for source in sources[table]), (
                f"nothing feeds {carrier} from {table} or its source"
            )


def test_the_migration_back_fills_the_hourly_roll_up_once_from_the_rows_still_kept(tmp_path):
    """An existing deployment: occupancy rows and stays stored before the roll-up existed, one of them past its TTL."""
    settings = load(write_config(tmp_path, "127.0.0.1:9"))
    mall = settings.malls[0]
    zone = ZoneInfo(mall.timezone)
    events = [event for event in gate_events(zone, random.Random(3)) if event.car_park_id == "P-B2"]
    occupancy, stays = through_the_parking_core(events, ParkingLayout.of(mall))
    warehouse = open_warehouse(settings.clickhouse)
    try:
        before = [migration for migration in MIGRATIONS if migration.version < PARKING_HOURLY.version]
        apply_migrations(warehouse, before)
        pseudonym = Pseudonym.of(settings)
        sink_in_batches(warehouse, PARKING_OCCUPANCY_TABLE, [OccupancyBatch(occupancy)], random.Random(1))
        sink_in_batches(warehouse, PARKING_STAYS_TABLE, stays, random.Random(2), pseudonym)
        assert apply_migrations(warehouse, [*before, PARKING_HOURLY]) == [PARKING_HOURLY.version]
        for statement in PARKING_HOURLY.statements:  # a migration cut short runs again from its start
            warehouse.command(statement)
        _, hours = warehouse.query("""
            SELECT hour, argMaxMerge(occupancy_end), max(occupancy_peak), sum(entries), sum(exits)
            FROM {db}.parking_hourly GROUP BY hour ORDER BY hour""")
    finally:
        warehouse.close()
    whole_from = (NOW - dt.timedelta(days=90)).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    level, truth = 0, {}
    for event in events:
        level += 1 if event.direction == "entry" else -1
        hour = event.ts.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        _end, peak, entries, exits = truth.get(hour, (0, 0, 0, 0))
        entering = event.direction == "entry"
        truth[hour] = (level, max(peak, level), entries + entering, exits + (not entering))
    kept = {hour.replace(tzinfo=None): figures for hour, figures in truth.items() if hour >= whole_from}
    assert kept and {hour: tuple(figures) for hour, *figures in hours} == kept


def same_hours_last_year(truth: dict, keys: set) -> dict:
    """Last year's figures of each (place, interval) of this year, by the report's calendar-year shift."""

    def back(start: str) -> str:
        return str(year_back(dt.datetime.fromisoformat(start)))

    return {(place, start): truth.get((place, back(start)), (None, None)) for place, start in keys}


def test_compare_last_year_sets_each_hour_beside_the_same_hour_a_year_before_at_one_grain(history):
    config, _events, ticks = history
    zone = ZoneInfo(load(config).malls[0].timezone)
    before = [year_back(dt.datetime.combine(day, dt.time())).date() for day in ONE_YEAR]
    then = counter_intervals(ticks, zone, 60, before)
    assert then, "the test needs last year's ticks"
    # 15 minutes asked: last year's minutes are gone, so both years are answered by the hour
    found = report(
        config, "footfall", "--by", "counter", *window(ONE_YEAR), "--interval", "15m", "--compare", "last-year"
    )
    assert {row["grain"] for row in found} == {"hour"}
    assert {(row["place"], row["interval_start"]): (row["in"], row["out"]) for row in found} == counter_intervals(
        ticks, zone, 60, ONE_YEAR
    )
    got = {(row["place"], row["interval_start"]): (row["in_last_year"], row["out_last_year"]) for row in found}
    assert got == same_hours_last_year(then, set(got))
    assert (None, None) in got.values(), "a day without last year's data has no figures"
    for row in found:
        base = row["in_last_year"]
        assert row["change"] == (round(row["in"] / base - 1, 4) if base else None)
    # recent minutes are still kept, but last year's are not: the comparison is by the hour
    recent = report(
        config, "footfall", "--by", "counter", *window(RECENT), "--interval", "15m", "--compare", "last-year"
    )
    assert {row["grain"] for row in recent} == {"hour"} and {row["interval_start"][14:16] for row in recent} == {"00"}


def test_parking_against_last_year_per_day_and_both_panels_show_last_years_hours(history):
    config, events, ticks = history
    settings = load(config)
    mall = settings.malls[0]
    zone = ZoneInfo(mall.timezone)
    before = [year_back(dt.datetime.combine(day, dt.time())).date() for day in ONE_YEAR]
    found = report(config, "parking", *window(ONE_YEAR), "--interval", "1d", "--compare", "last-year")
    assert {
        (row["car_park"], row["interval_start"]): (
            row["occupancy_end"],
            row["occupancy_peak"],
            row["entries"],
            row["exits"],
        )
        for row in found
    } == parking_days(events, zone, ONE_YEAR)
    truth_then = parking_days(events, zone, sorted({*TWO_YEARS, *before}))  # cars parked over from the days before
    for row in found:
        _level, peak, entries, exits = truth_then[
            (row["car_park"], str(year_back(dt.datetime.fromisoformat(row["interval_start"]))))
        ]
        shown = (row["occupancy_peak_last_year"], row["entries_last_year"], row["exits_last_year"])
        assert shown == ((None, None, None) if (peak, entries, exits) == (0, 0, 0) else (peak, entries, exits))
    assert any(row["entries_last_year"] for row in found)

    start, end = (
        dt.datetime.combine(day, dt.time(), zone) for day in (ONE_YEAR[0], ONE_YEAR[-1] + dt.timedelta(days=1))
    )
    panels = {
        result.panel: result.rows
        for board in read_boards(PROVISIONING)
        for result in panel_results(settings, board, mall.id, start, end)
        if "last year" in result.panel
    }
    entrances = {counter.id for counter in mall.people_counters if counter.place in {e.id for e in mall.entrances}}
    people_then: defaultdict[str, int] = defaultdict(int)
    for (counter, hour), (count_in, _) in counter_intervals(ticks, zone, 60, before).items():
        if counter in entrances:
            people_then[hour] += count_in
    cars_then: defaultdict[str, int] = defaultdict(int)
    for event in events:
        local = event.ts.astimezone(zone).replace(tzinfo=None)
        if event.direction == "entry" and local.date() in before:
            cars_then[str(local.replace(minute=0, second=0, microsecond=0))] += 1
    for title, truth in (
        ("People in per hour: this period against the same period last year", people_then),
        ("Cars in per hour: this period against the same period last year", cars_then),
    ):
        shown = {
            row["time"]: row["the same period last year"]
            for row in panels[title]
            if row.get("the same period last year")
        }  # (an hour of exits only has no cars in)
        moved_on = {
            str(dt.datetime.fromisoformat(hour).replace(year=before[0].year + 1)): n for hour, n in truth.items()
        }
        assert truth and shown == moved_on, title
