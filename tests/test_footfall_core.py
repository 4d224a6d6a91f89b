"""The footfall core against simulated days whose ground truth is known."""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import replace

import msgspec
import pytest

from mallstream.settings import Device, FootfallConfig, Mall, Place, load
from mallstream.simulators.mallday import STAFF_EPC_PREFIX, FaultKnobs, MallDay, simulate
from mallstream.streams.core.footfall import (
    FootfallState,
    RollupRow,
    advance,
    apply_event,
    floor_attraction,
)
from mallstream.streams.core.footfall_layout import FootfallLayout
from mallstream.streams.core.occupancy import AreaDay, AreaRow
from mallstream.streams.core.snapshots import footfall_from_bytes, footfall_to_bytes
from mallstream.streams.records import FootfallTick, ParkingEvent
from tests.conftest import EXAMPLE_CONFIG

DAY = MallDay(visitors=8000, staff=80, staff_badges=True, seed=3)
CLOSING = dt.time(22)
CONFIG = FootfallConfig(
    staff_badge_prefixes=(STAFF_EPC_PREFIX,),
    empties_at=CLOSING,
    allowed_lateness_s=600,
    aisle_counters={"S201": "C-Z-atrium"},
)


@pytest.fixture(scope="module")
def mall() -> Mall:
    """The example mall with a counter and a badge reader at every entrance, zone and store."""
    mall = load(EXAMPLE_CONFIG).malls[0]
    places = [place.id for place in (*mall.entrances, *mall.zones, *mall.stores)]
    return mall.model_copy(
        update={
            "people_counters": [Device(id=f"C-{p}", place=p, excludes_staff=p == "S201") for p in places],
            "rfid_readers": [Device(id=f"R-{p}", place=p) for p in places],
        }
    )


@pytest.fixture(scope="module")
def layout(mall: Mall) -> FootfallLayout:
    return FootfallLayout.of(mall, CONFIG)


@pytest.fixture(scope="module")
def clean(mall: Mall):
    return simulate(mall, DAY)


@pytest.fixture(scope="module")
def clean_outputs(clean, layout: FootfallLayout) -> list:
    return run(clean.events, layout)


def run(events, layout: FootfallLayout, state: FootfallState | None = None) -> list:
    """Events in arrival order, the clock at the newest event time seen, then the stream drained."""
    state = state or FootfallState()
    outputs: list = []
    newest = float("-inf")
    for event in events:
        if isinstance(event, ParkingEvent):
            continue
        newest = max(newest, event.ts.timestamp())
        state, emitted = apply_event(state, event, newest, layout)
        outputs += emitted
    return outputs + advance(state, newest + 6 * 3600, layout)


def rows(outputs, level: str, late: bool | None = None) -> list[RollupRow]:
    return [o for o in outputs if isinstance(o, RollupRow) and o.level == level and late in (None, o.late)]


def hourly(outputs, level: str) -> dict[str, dict[str, dict[str, int]]]:
    """Rows per key and local hour, in the ground truth's shape (hours with nobody left out)."""
    hours: dict = collections.defaultdict(lambda: collections.defaultdict(lambda: {"in": 0, "out": 0}))
    for row in rows(outputs, level):
        counts = hours[row.key][row.start.replace(minute=0).isoformat()]
        counts["in"] += row.visitors_in
        counts["out"] += row.visitors_out
    busy = {key: {hour: c for hour, c in by_hour.items() if c != {"in": 0, "out": 0}} for key, by_hour in hours.items()}
    return {key: by_hour for key, by_hour in busy.items() if by_hour}


def true_places(truth, level_ids) -> dict:
    return {place: truth.visitors[place] for place in level_ids if place in truth.visitors}


def occupancy_at_hours(outputs, key: str) -> dict[dt.datetime, AreaRow]:
    """The area's row at each full hour (the row of the interval ending then)."""
    return {
        row.start + dt.timedelta(seconds=row.interval_s): row
        for row in outputs
        if isinstance(row, AreaRow) and row.key == key and row.start.minute == 59
    }


def true_occupancy(truth, places) -> dict[dt.datetime, int]:
    """People inside at the end of each hour, from the hourly truth."""
    net: collections.Counter = collections.Counter()
    for place in places:
        for hour, counts in truth.visitors.get(place, {}).items():
            net[dt.datetime.fromisoformat(hour) + dt.timedelta(hours=1)] += counts["in"] - counts["out"]
    inside, occupancy = 0, {}
    for end in sorted(net):
        inside += net[end]
        occupancy[end] = inside
    return occupancy


def test_hourly_in_and_out_equal_the_truth_for_every_entrance_zone_and_store(clean, clean_outputs, mall) -> None:
    for level, places in (("entrance", mall.entrances), ("zone", mall.zones), ("store", mall.stores)):
        assert hourly(clean_outputs, level) == true_places(clean.truth, [p.id for p in places]), level
    assert not rows(clean_outputs, "entrance", late=True)


def test_staff_are_deducted_so_visitors_are_the_truths_visitors_not_people(clean, clean_outputs, mall, layout) -> None:
    (mall_in, mall_out) = [
        sum(getattr(r, f) for r in rows(clean_outputs, "mall")) for f in ("visitors_in", "visitors_out")
    ]
    assert mall_in == mall_out == DAY.visitors
    staff_in = sum(r.staff_in for r in rows(clean_outputs, "entrance"))
    true_staff_in = sum(c["in"] for p in mall.entrances for c in clean.truth.staff.get(p.id, {}).values())
    assert staff_in == true_staff_in > DAY.staff
    assert sum(r.staff_in for r in rows(clean_outputs, "store") if r.key == "S201") == 0, "counter excludes staff"

    without_badges = FootfallLayout.of(mall, CONFIG.model_copy(update={"staff_badge_prefixes": ()}))
    people_in = sum(r.visitors_in for r in rows(run(clean.events, without_badges), "mall"))
    assert people_in == DAY.visitors + true_staff_in


def test_a_staff_passage_counts_staff_only(mall: Mall) -> None:
    staff_door = Place(id="E-staff", name="Staff door", floor="B1")
    with_door = mall.model_copy(
        update={
            "entrances": [*mall.entrances, staff_door],
            "people_counters": [*mall.people_counters, Device(id="C-staff", place="E-staff")],
        }
    )
    day = simulate(
        with_door, replace(DAY, staff_badges=False, staff_entrances=("E-staff",), entrance_weights={"E-staff": 0.0})
    )
    layout = FootfallLayout.of(with_door, CONFIG.model_copy(update={"staff_passages": frozenset({"C-staff"})}))
    outputs = run(day.events, layout)
    assert sum(r.visitors_in for r in rows(outputs, "mall")) == DAY.visitors
    assert (
        sum(r.staff_in for r in rows(outputs, "mall"))
        == sum(c["in"] for c in day.truth.staff["E-staff"].values())
        > DAY.staff
    )
    assert hourly(outputs, "entrance") == true_places(day.truth, [e.id for e in mall.entrances])


def test_under_counted_exits_are_corrected_within_5_percent_all_day_and_zero_at_closing(mall, layout) -> None:
    """Day one teaches the counters' imbalance; on day two, occupancy follows the truth, not the drift."""
    undercount = FaultKnobs(undercount={counter.id: 0.03 for counter in mall.people_counters})
    first = simulate(mall, replace(DAY, faults=undercount))
    second = simulate(mall, replace(DAY, faults=undercount, seed=DAY.seed + 1, day=DAY.day + dt.timedelta(days=1)))
    state = FootfallState()
    learned = [o for o in run(first.events, layout, state) if isinstance(o, AreaDay) and o.key == mall.id]
    outputs = run(second.events, layout, state)

    assert learned[0].residual > 0.025 * DAY.visitors, "the first day drifts: nothing to learn from yet"
    assert learned[0].exit_scale_next == pytest.approx(1 / 0.97, rel=0.003)
    closing = dt.datetime.combine(second.truth.day, CLOSING, layout.timezone)
    areas = [(mall.id, [e.id for e in mall.entrances])] + [(s.id, [s.id]) for s in mall.stores]
    for key, places in areas:
        measured, truth = occupancy_at_hours(outputs, key), true_occupancy(second.truth, places)
        open_hours = [end for end in truth if end < closing]
        assert len(open_hours) == 11
        for end in open_hours:
            assert measured[end].occupancy == pytest.approx(truth[end], rel=0.05), (key, end)
        assert measured[closing].occupancy == 0
    drifted = occupancy_at_hours(outputs, mall.id)[closing - dt.timedelta(hours=2)].occupancy_uncorrected
    assert drifted > 1.2 * true_occupancy(second.truth, areas[0][1])[closing - dt.timedelta(hours=2)], (
        "uncorrected, the drift is far beyond 5%, so a clamp at zero could not pass"
    )


def test_dwell_by_littles_law_and_by_matched_flows_is_within_10_percent(clean, clean_outputs, mall) -> None:
    days = {o.key: o for o in clean_outputs if isinstance(o, AreaDay)}
    for key in [mall.id, *(s.id for s in mall.stores), "Z-atrium"]:
        true_dwell = clean.truth.mean_dwell_s[key]
        assert days[key].dwell_littles_s == pytest.approx(true_dwell, rel=0.10), key
        assert days[key].dwell_matched_s == pytest.approx(true_dwell, rel=0.10), key
    departures = [o for o in clean_outputs if isinstance(o, AreaRow) and o.key == mall.id and o.dwell_s]
    assert sum(o.departures for o in departures) == pytest.approx(DAY.visitors)


def test_conversion_is_sales_over_visitors_per_store_and_for_the_mall(clean, clean_outputs, mall) -> None:
    truth = clean.truth
    for store in mall.stores:
        store_rows = [r for r in rows(clean_outputs, "store") if r.key == store.id]
        visitors, sales = sum(r.visitors_in for r in store_rows), sum(r.transactions for r in store_rows)
        assert sales / visitors == truth.transactions[store.id]["sales"] / sum(
            c["in"] for c in truth.visitors[store.id].values()
        )
        assert all(r.conversion == r.transactions / r.visitors_in for r in store_rows if r.visitors_in)
    sales = sum(figures["sales"] for figures in truth.transactions.values())
    assert sum(r.transactions for r in rows(clean_outputs, "mall")) == sales


def test_floor_attraction_capture_rate_and_density(clean, clean_outputs, mall) -> None:
    entries = {e.id: sum(c["in"] for c in clean.truth.visitors[e.id].values()) for e in mall.entrances}
    assert floor_attraction(rows(clean_outputs, "floor") + rows(clean_outputs, "mall")) == pytest.approx(
        {"L1": entries["E-north"] / DAY.visitors, "B1": (entries["E-south"] + entries["E-carpark"]) / DAY.visitors}
    )

    s201 = [r for r in rows(clean_outputs, "store") if r.key == "S201" and r.passers_by]
    atrium = {r.start: r for r in rows(clean_outputs, "counter") if r.key == "C-Z-atrium"}
    assert s201 and all(
        r.passers_by
        == atrium[r.start].visitors_in
        + atrium[r.start].visitors_out
        + atrium[r.start].staff_in
        + atrium[r.start].staff_out
        for r in s201
    )
    assert all(r.capture_rate == r.visitors_in / r.passers_by for r in s201)

    atrium_rows = [o for o in clean_outputs if isinstance(o, AreaRow) and o.key == "Z-atrium"]
    assert max(o.occupancy for o in atrium_rows) > 0
    assert all(o.density == pytest.approx(o.occupancy / 1200, abs=0.5 / 1200) for o in atrium_rows)
    assert all(o.density is None for o in clean_outputs if isinstance(o, AreaRow) and o.key == "S101")


def test_late_ticks_land_in_their_own_interval_or_come_out_as_late_rows(mall, clean, clean_outputs, layout) -> None:
    late = simulate(mall, replace(DAY, faults=FaultKnobs(late_event_rate=0.05, lateness_s=300)))
    assert late.truth.faults["late_events"] > 0
    within = run(late.events, layout)
    assert not [o for o in within if isinstance(o, RollupRow) and o.late]
    assert sorted(rows(within, "counter"), key=repr) == sorted(rows(clean_outputs, "counter"), key=repr)

    impatient = FootfallLayout.of(mall, CONFIG.model_copy(update={"allowed_lateness_s": 60}))
    beyond = run(late.events, impatient)
    late_rows = rows(beyond, "entrance", late=True)
    assert late_rows, "ticks later than allowed come out as late rows, never silently dropped"
    true_ticks = {
        (e.counter_id, e.ts - dt.timedelta(seconds=e.interval_s))
        for e in clean.events
        if isinstance(e, FootfallTick) and (e.count_in or e.count_out)
    }
    assert all((f"C-{r.key}", r.start) in true_ticks for r in late_rows if r.visitors_in or r.visitors_out)
    assert hourly(beyond, "entrance") == true_places(clean.truth, [e.id for e in mall.entrances])


def test_a_re_pushed_tick_is_counted_once(clean, clean_outputs, layout) -> None:
    ticks = [e for e in clean.events if isinstance(e, FootfallTick)]
    re_pushed = [copy for tick in clean.events for copy in ([tick, tick] if isinstance(tick, FootfallTick) else [tick])]
    re_pushed += ticks[len(ticks) // 2 : len(ticks) // 2 + 50]  # and again much later, after their interval closed
    outputs = run(re_pushed, layout)
    assert rows(outputs, "counter") == rows(clean_outputs, "counter")
    assert hourly(outputs, "store") == hourly(clean_outputs, "store")


def test_a_counter_missing_from_the_config_still_gets_its_own_rows(layout) -> None:
    tick = FootfallTick(
        counter_id="C-new", ts=dt.datetime(2026, 11, 23, 10, 1, tzinfo=layout.timezone), count_in=4, count_out=1
    )
    outputs = run([tick], layout)
    assert [(r.level, r.key, r.visitors_in, r.visitors_out) for r in rows(outputs, "counter")] == [
        ("counter", "C-new", 4, 1)
    ]
    assert not rows(outputs, "mall")


def test_a_state_restored_from_its_snapshot_goes_on_as_if_it_never_stopped(clean, clean_outputs, layout) -> None:
    """What the agent's table keeps is the whole state: stopping anywhere and restoring changes no output."""
    state, outputs, newest = FootfallState(), [], float("-inf")
    for number, event in enumerate(e for e in clean.events if not isinstance(e, ParkingEvent)):
        if number % 997 == 0:
            state = footfall_from_bytes(footfall_to_bytes(state))
        newest = max(newest, event.ts.timestamp())
        state, emitted = apply_event(state, event, newest, layout)
        outputs += emitted
    assert outputs + advance(state, newest + 6 * 3600, layout) == clean_outputs


def test_a_tick_storm_keeps_a_malls_state_small(layout) -> None:
    """2,500 ticks/s of one counter for two minutes (kept tick by tick: 5.4 MB); a Kafka message holds 1 MB."""
    state, start = FootfallState(), dt.datetime(2026, 11, 23, 10, tzinfo=layout.timezone)
    for number in range(300_000):
        ts = start + dt.timedelta(microseconds=400 * number)
        state, _ = apply_event(
            state, FootfallTick(counter_id="C-storm", ts=ts, count_in=1, interval_s=1), ts.timestamp(), layout
        )
    assert len(footfall_to_bytes(state)) < 20_000
    again = FootfallTick(counter_id="C-storm", ts=start + dt.timedelta(seconds=60), count_in=1, interval_s=1)
    before = footfall_to_bytes(state)
    state, outputs = apply_event(state, again, again.ts.timestamp(), layout)
    assert outputs == [] and footfall_to_bytes(state) == before, "a re-push inside the covered period is not counted"


def test_a_snapshot_from_before_the_ranges_still_recognises_its_re_pushed_ticks(layout) -> None:
    """A worker upgraded over a stored state: the old (interval start, [counter, ts]) keys become ranges."""
    tick = FootfallTick(counter_id="C-old", ts=dt.datetime(2026, 11, 23, 10, 1, tzinfo=layout.timezone), count_in=3)
    state, _ = apply_event(FootfallState(), tick, tick.ts.timestamp(), layout)
    now, closed_until, next_reset, open_intervals, _, *rest = msgspec.msgpack.decode(footfall_to_bytes(state))
    ts = tick.ts.timestamp()
    old = msgspec.msgpack.encode([now, closed_until, next_reset, open_intervals, [[ts - 60, [["C-old", ts]]]], *rest])
    restored = footfall_from_bytes(old)
    before = footfall_to_bytes(restored)
    restored, outputs = apply_event(restored, tick, ts, layout)  # the core updates the state in place
    assert footfall_to_bytes(restored) == before and outputs == []
    later = FootfallTick(counter_id="C-old", ts=tick.ts + dt.timedelta(minutes=1), count_in=2)
    restored, _ = apply_event(restored, later, ts + 60, layout)
    assert footfall_to_bytes(restored) != before, "the next tick is new, and counted"
