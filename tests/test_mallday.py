"""The mall-day model: deterministic, valid on the wire, and consistent with the ground truth it writes."""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from mallstream.settings import Mall, Settings, load
from mallstream.simulators.mallday import (
    SCENARIOS,
    STAFF_EPC_PREFIX,
    FaultKnobs,
    GroundTruth,
    MallDay,
    Outage,
    plates_of,
    record,
    scenario,
    simulate,
    truth_path,
)
from mallstream.streams.records import (
    INPUT_TYPES,
    FootfallTick,
    ParkingEvent,
    PosTransaction,
    RfidRead,
    decode_input,
)
from tests.conftest import EXAMPLE_CONFIG, SCALE

DAY = MallDay(visitors=4000, staff=60, vip_share=0.02, seed=11)
OUTAGE_START, OUTAGE_END = dt.time(14), dt.time(15)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load(EXAMPLE_CONFIG)


@pytest.fixture(scope="module")
def mall(settings: Settings) -> Mall:
    return settings.malls[0]


@pytest.fixture(scope="module")
def clean(mall: Mall):
    return simulate(mall, DAY)


def faulty(mall: Mall, faults: FaultKnobs):
    return simulate(mall, replace(DAY, faults=faults))


def hour_of_interval(tick: FootfallTick) -> str:
    start = tick.ts - dt.timedelta(seconds=tick.interval_s)
    return start.replace(minute=0, second=0, microsecond=0).isoformat()


def ticks_per_hour(events, counter_id: str) -> dict[str, dict[str, int]]:
    hours: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"in": 0, "out": 0})
    for tick in events:
        if isinstance(tick, FootfallTick) and tick.counter_id == counter_id:
            hours[hour_of_interval(tick)]["in"] += tick.count_in
            hours[hour_of_interval(tick)]["out"] += tick.count_out
    return {hour: counts for hour, counts in hours.items() if counts != {"in": 0, "out": 0}}


def add(*per_hour: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"in": 0, "out": 0})
    for hours in per_hour:
        for hour, counts in hours.items():
            total[hour]["in"] += counts["in"]
            total[hour]["out"] += counts["out"]
    return dict(total)


def counted(events, counter_id: str) -> tuple[int, int]:
    ticks = [e for e in events if isinstance(e, FootfallTick) and e.counter_id == counter_id]
    return sum(t.count_in for t in ticks), sum(t.count_out for t in ticks)


def totals(per_hour: dict[str, dict[str, int]]) -> tuple[int, int]:
    return sum(c["in"] for c in per_hour.values()), sum(c["out"] for c in per_hour.values())


def lines_of(events) -> list[bytes]:
    return [msgspec.json.encode(event) for event in events]


def test_same_seed_same_bytes_and_another_seed_differs(settings: Settings, mall: Mall, tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    for path, seed in zip(paths, (11, 11, 12), strict=False):
        record(settings, mall.id, replace(DAY, seed=seed), path, progress=False)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert truth_path(paths[0]).read_bytes() == truth_path(paths[1]).read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    assert truth_path(paths[0]).read_bytes() != truth_path(paths[2]).read_bytes()


def test_every_line_is_a_valid_typed_event(settings: Settings, mall: Mall, tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl"
    truth = record(settings, mall.id, DAY, path, progress=False)
    kinds = collections.Counter()
    for line in path.read_bytes().splitlines():
        event = decode_input(line)  # validates, raising InvalidEvent otherwise
        assert INPUT_TYPES[json.loads(line)["type"]] is type(event)
        assert event.mall_id == mall.id
        kinds[type(event)] += 1
    assert set(kinds) == {PosTransaction, RfidRead, FootfallTick, ParkingEvent}
    assert GroundTruth.read(truth_path(path)) == truth


def test_every_visitor_comes_in_and_goes_out_within_opening_hours(clean, mall: Mall) -> None:
    entrances = {e.id for e in mall.entrances}
    came_in = sum(totals(hours)[0] for place, hours in clean.truth.visitors.items() if place in entrances)
    went_out = sum(totals(hours)[1] for place, hours in clean.truth.visitors.items() if place in entrances)
    assert came_in == went_out == DAY.visitors
    tz = ZoneInfo(mall.timezone)
    opening_hours = {
        dt.datetime.combine(DAY.day, dt.time(hour), tz).isoformat()
        for hour in range(DAY.opening.hour, DAY.closing.hour)
    }
    assert {hour for hours in clean.truth.visitors.values() for hour in hours} == opening_hours
    for visit in clean.truth.vip_visits:
        assert visit["arrived"] <= visit["left"]
        assert all(visit["arrived"] <= stop["arrived"] <= stop["left"] <= visit["left"] for stop in visit["stops"])


def test_footfall_ticks_equal_true_crossings_hour_by_hour(clean, mall: Mall) -> None:
    for counter in mall.people_counters:
        visitors = clean.truth.visitors[counter.place]
        truth = visitors if counter.excludes_staff else add(visitors, clean.truth.staff[counter.place])
        assert ticks_per_hour(clean.events, counter.id) == truth, counter.id
    assert totals(clean.truth.staff["E-north"])[0] > 0, "staff must walk through counted doors"


def test_a_counter_that_excludes_staff_counts_customers_only(mall: Mall) -> None:
    assert any(counter.excludes_staff for counter in mall.people_counters)  # set in the config, as C-S201
    day = simulate(mall, replace(DAY, staff_excluding_counters=frozenset({"C-north"})))
    assert ticks_per_hour(day.events, "C-north") == day.truth.visitors["E-north"]
    assert ticks_per_hour(day.events, "C-south") == add(day.truth.visitors["E-south"], day.truth.staff["E-south"])


def test_outages_lose_or_replay_what_the_counter_would_have_sent(mall: Mall) -> None:
    """Rule: a counter down over (start, end] loses the ticks ending in it, which cover [start, end) exactly."""
    day = faulty(
        mall,
        FaultKnobs(
            outages=(
                Outage("C-north", OUTAGE_START, OUTAGE_END, backlog=False),
                Outage("C-south", OUTAGE_START, OUTAGE_END, backlog=True),
            )
        ),
    )
    tz = ZoneInfo(mall.timezone)
    lost_hour = dt.datetime.combine(DAY.day, OUTAGE_START, tz).isoformat()
    north = add(day.truth.visitors["E-north"], day.truth.staff["E-north"])
    assert north[lost_hour]["in"] > 0
    expected_north = {hour: counts for hour, counts in north.items() if hour != lost_hour}
    assert ticks_per_hour(day.events, "C-north") == expected_north
    assert ticks_per_hour(day.events, "C-south") == add(day.truth.visitors["E-south"], day.truth.staff["E-south"])
    assert day.truth.faults["lost"] == {"C-north": 60} and day.truth.faults["backlogged"] == {"C-south": 60}

    end = dt.datetime.combine(DAY.day, OUTAGE_END, tz)
    backlog = [
        i
        for i, e in enumerate(day.events)
        if isinstance(e, FootfallTick) and e.counter_id == "C-south" and end - dt.timedelta(hours=1) < e.ts <= end
    ]
    before_end = [i for i, e in enumerate(day.events) if e.ts < end and i not in backlog]
    assert len(backlog) == 60 and max(before_end) < min(backlog), "the backlog is replayed when the counter is back"


def test_rfid_reads_only_at_readers_on_the_vips_path(clean, mall: Mall) -> None:
    place_of = {reader.id: reader.place for reader in mall.rfid_readers}
    visits = {visit["epc"]: visit for visit in clean.truth.vip_visits}
    reads = [e for e in clean.events if isinstance(e, RfidRead)]
    seen = collections.defaultdict(set)
    for read in reads:
        visit = visits[read.epc]
        path = {visit["entrance"], visit["exit"], *(stop["place"] for stop in visit["stops"])}
        assert place_of[read.reader_id] in path
        ts = read.ts
        assert dt.datetime.fromisoformat(visit["arrived"]) - dt.timedelta(seconds=2) <= ts
        assert ts <= dt.datetime.fromisoformat(visit["left"]) + dt.timedelta(seconds=2)
        assert not read.duplicate and read.clock_skew_s is None
        seen[read.epc].add(read.reader_id)
    for epc, visit in visits.items():
        path = {visit["entrance"], visit["exit"], *(stop["place"] for stop in visit["stops"])}
        assert seen[epc] == {reader for reader, place in place_of.items() if place in path}, epc
    assert {read.reader_id for read in reads} == set(place_of), "every reader sees some VIP"
    assert all(epc.startswith("E280") and len(epc) == 24 for epc in visits)


def test_pos_events_are_the_true_transactions(clean) -> None:
    figures = collections.defaultdict(lambda: {"sales": 0, "sales_total": 0, "returns": 0, "returns_total": 0})
    sales: dict[str, PosTransaction] = {}
    for txn in (e for e in clean.events if isinstance(e, PosTransaction)):
        kind = "sales" if txn.kind == "sale" else "returns"
        figures[txn.store_id][kind] += 1
        figures[txn.store_id][f"{kind}_total"] += txn.total
        if txn.kind == "sale":
            sales[txn.txn_id] = txn
        else:
            original = sales[txn.original_txn_id]  # a return undoes a sale already rung up
            assert original.store_id == txn.store_id and txn.lines[0] in original.lines
    truth = {
        store: {key: str(value) if "total" in key else value for key, value in counts.items()}
        for store, counts in figures.items()
    }
    assert truth == clean.truth.transactions
    assert all(counts["returns"] > 0 for counts in figures.values())


def test_parking_entries_and_exits_pair_up_as_the_true_stays(clean, mall: Mall) -> None:
    seen: dict[str, list[ParkingEvent]] = collections.defaultdict(list)
    for event in clean.events:
        if isinstance(event, ParkingEvent):
            seen[event.plate].append(event)
    assert all([e.direction for e in events] == ["entry", "exit"] for events in seen.values())
    assert all(events[0].ts < events[1].ts for events in seen.values())
    assert {events[0].gate_id for events in seen.values()} == {"G-in-1"}
    assert {events[1].gate_id for events in seen.values()} == {"G-out-1"}
    stays = {(s["plate"], s["entry"], s["exit"]) for s in clean.truth.parking_stays}
    assert stays == {(plate, e[0].ts.isoformat(), e[1].ts.isoformat()) for plate, e in seen.items()}
    assert 0.15 * DAY.visitors < len(stays) < 0.25 * DAY.visitors


def test_vips_with_a_car_on_the_card_drive_it_to_the_mall(clean) -> None:
    theirs = [stay for stay in clean.truth.parking_stays if stay["member_id"]]
    vips = {visit["member_id"] for visit in clean.truth.vip_visits}
    assert 0 < len(theirs) < 0.1 * len(clean.truth.parking_stays)
    for stay in theirs:
        assert stay["member_id"] in vips and stay["plate"] == plates_of(int(stay["member_id"][1:]))[0]


def test_a_clean_day_is_delivered_in_time_order(clean) -> None:
    stamps = [event.ts for event in clean.events]
    assert stamps == sorted(stamps)


def longest_ordered_run(stamps: list[dt.datetime]) -> int:
    """Length of the longest non-decreasing subsequence (patience sorting)."""
    tails: list[dt.datetime] = []
    for stamp in stamps:
        at = bisect.bisect_right(tails, stamp)
        tails[at : at + 1] = [stamp]
    return len(tails)


def test_late_events_are_the_only_ones_out_of_order(clean, mall: Mall) -> None:
    lateness = dt.timedelta(minutes=5)
    day = faulty(mall, FaultKnobs(late_event_rate=0.02, lateness_s=lateness.total_seconds()))
    late = day.truth.faults["late_events"]
    stamps = [event.ts for event in day.events]
    assert late > 0 and stamps != sorted(stamps)
    assert longest_ordered_run(stamps) >= len(stamps) - late
    newest = stamps[0]
    for stamp in stamps:
        assert stamp >= newest - lateness, "nothing arrives later than the lateness"
        newest = max(newest, stamp)
    assert sorted(lines_of(day.events)) == sorted(lines_of(clean.events)), "late, but the same events"


def test_duplicate_reads_are_marked_copies_right_after_the_original(clean, mall: Mall) -> None:
    day = faulty(mall, FaultKnobs(duplicate_read_rate=0.2))
    duplicates = [i for i, e in enumerate(day.events) if isinstance(e, RfidRead) and e.duplicate]
    assert len(duplicates) == day.truth.faults["duplicate_reads"] > 0
    for i in duplicates:
        assert msgspec.structs.replace(day.events[i], duplicate=False) == day.events[i - 1]
    originals = [e for e in day.events if not (isinstance(e, RfidRead) and e.duplicate)]
    assert lines_of(originals) == lines_of(clean.events)
    for counter in mall.people_counters:
        assert counted(day.events, counter.id) == counted(clean.events, counter.id)


def test_a_skewed_reader_stamps_its_reads_ahead_and_is_flagged(clean, mall: Mall) -> None:
    day = faulty(mall, FaultKnobs(clock_skew_s={"R-north": 90.0}))
    skewed = [e for e in day.events if isinstance(e, RfidRead) and e.reader_id == "R-north"]
    true = [e for e in clean.events if isinstance(e, RfidRead) and e.reader_id == "R-north"]
    assert skewed and [e.ts - dt.timedelta(seconds=90) for e in skewed] == [e.ts for e in true]
    assert {e.clock_skew_s for e in skewed} == {90.0}

    def elsewhere(events):
        return [e for e in events if not (isinstance(e, RfidRead) and e.reader_id == "R-north")]

    assert lines_of(elsewhere(day.events)) == lines_of(elsewhere(clean.events))


def test_faults_never_change_the_truth(clean, mall: Mall) -> None:
    day = faulty(mall, scenario("outage", mall).faults)
    assert day.truth.faults["lost"] and day.truth.faults["duplicate_reads"]
    assert replace(day.truth, faults={}) == replace(clean.truth, faults={})


def test_scenarios_fit_the_mall_and_duration_keeps_the_first_hours(mall: Mall) -> None:
    for name in SCENARIOS:
        assert scenario(name, mall, seed=3).seed == 3
    outage = scenario("outage", mall)
    assert {o.device_id for o in outage.faults.outages} == {"C-north", "R-north"}
    full, short = scenario("weekday", mall), scenario("weekday", mall, duration=dt.timedelta(hours=3))
    assert short.closing == dt.time(13) and 0 < short.visitors < full.visitors * 3 / 12


@pytest.mark.heavy
def test_a_big_day_records_quickly(settings: Settings, mall: Mall, tmp_path: Path) -> None:
    visitors = int(10_000 * SCALE)
    path = tmp_path / "big.jsonl"
    started = time.perf_counter()
    truth = record(
        settings, mall.id, MallDay(visitors=visitors, faults=scenario("outage", mall).faults), path, progress=False
    )
    print(f"\n{visitors} visitors recorded in {time.perf_counter() - started:.1f} s")
    entrances = {e.id for e in mall.entrances}
    assert sum(totals(h)[0] for p, h in truth.visitors.items() if p in entrances) == visitors
    with path.open("rb") as lines:
        kinds = collections.Counter(type(decode_input(line)) for line in lines)
    receipts = sum(figures["sales"] + figures["returns"] for figures in truth.transactions.values())
    assert kinds[PosTransaction] == receipts > visitors * DAY.conversion
    assert kinds[ParkingEvent] == 2 * len(truth.parking_stays)


def test_an_undercounting_counter_misses_its_share_of_exits_evenly(clean, mall: Mall) -> None:
    day = faulty(mall, FaultKnobs(undercount={"C-north": 0.03}))
    true_in, true_out = counted(clean.events, "C-north")
    seen_in, seen_out = counted(day.events, "C-north")
    assert seen_in == true_in and seen_out == true_out - day.truth.faults["undercounted"]["C-north"]
    assert day.truth.faults["undercounted"]["C-north"] == int(true_out * 0.03)
    missed = add(ticks_per_hour(clean.events, "C-north"), {})
    for hour, counts in ticks_per_hour(day.events, "C-north").items():
        assert missed[hour]["out"] - counts["out"] <= 0.03 * missed[hour]["out"] + 1, hour
    assert counted(day.events, "C-south") == counted(clean.events, "C-south")
    assert replace(day.truth, faults={}) == replace(clean.truth, faults={})


def test_staff_badges_are_read_at_their_doors_from_the_moment_they_cross(mall: Mall) -> None:
    day = simulate(mall, replace(DAY, staff_badges=True))
    reads = [e for e in day.events if isinstance(e, RfidRead) and e.epc.startswith(STAFF_EPC_PREFIX)]
    place_of = {reader.id: reader.place for reader in mall.rfid_readers}
    assert reads and {place_of[read.reader_id] for read in reads} <= {"E-north", "S101"}
    stamps = collections.defaultdict(list)
    for read in reads:
        stamps[place_of[read.reader_id]].append((read.epc, read.ts))
    for place, seen in stamps.items():
        seen.sort()
        passes = 1 + sum(
            epc == before_epc and (ts - before).total_seconds() > 10
            for (before_epc, before), (epc, ts) in itertools.pairwise(seen)
        )
        passes += len({epc for epc, _ in seen}) - 1
        assert passes == sum(c["in"] + c["out"] for c in day.truth.staff[place].values()), place
    vip_reads = [e for e in day.events if isinstance(e, RfidRead) and not e.epc.startswith(STAFF_EPC_PREFIX)]
    clean_vip_reads = [e for e in simulate(mall, DAY).events if isinstance(e, RfidRead)]
    assert lines_of(vip_reads) == lines_of(clean_vip_reads), "badges do not reshuffle the VIP reads"


def test_the_truth_holds_the_mean_dwell_of_the_mall_and_each_store(clean, mall: Mall) -> None:
    dwell = clean.truth.mean_dwell_s
    assert set(dwell) >= {mall.id, *(store.id for store in mall.stores)}
    assert all(60 < dwell[store.id] < dwell[mall.id] for store in mall.stores)
    assert dwell[mall.id] < 3 * 3600
