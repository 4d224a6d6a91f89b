"""The parking core against a simulated day: occupancy and stays as they really were, full-park alerts once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from mallstream.settings import Mall, load
from mallstream.simulators.mallday import MallDay, simulate
from mallstream.streams.core.parking import (
    ParkingConfig,
    ParkingLayout,
    ParkingOccupancy,
    ParkingState,
    ParkingStay,
    apply_parking_event,
)
from mallstream.streams.core.snapshots import parking_from_bytes, parking_to_bytes
from mallstream.streams.records import Alert, ParkingEvent
from tests.conftest import EXAMPLE_CONFIG

DAY = MallDay(visitors=6000, seed=5)
T0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def mall() -> Mall:
    return load(EXAMPLE_CONFIG).malls[0]


@pytest.fixture(scope="module")
def day(mall: Mall):
    return simulate(mall, DAY)


def run(events, layout: ParkingLayout, fee=None) -> list:
    state, outputs = ParkingState(), []
    for event in (e for e in events if isinstance(e, ParkingEvent)):
        state, emitted = apply_parking_event(state, event, event.ts, layout, fee)
        outputs += emitted
    return outputs


def gate(plate: str, direction: str, minutes: float, park: str = "P-B2") -> ParkingEvent:
    return ParkingEvent(gate_id=f"G-{direction}", car_park_id=park, plate=plate, direction=direction,
                        ts=T0 + dt.timedelta(minutes=minutes))


def test_stays_are_the_true_stays(day, mall: Mall) -> None:
    stays = [o for o in run(day.events, ParkingLayout.of(mall)) if isinstance(o, ParkingStay)]
    assert len(stays) == len(day.truth.parking_stays) > 0
    assert {(s.plate, s.car_park_id, s.entry.isoformat(), s.exit.isoformat()) for s in stays} == {
        (t["plate"], t["car_park"], t["entry"], t["exit"]) for t in day.truth.parking_stays}
    for stay in stays:
        assert stay.duration_s == (stay.exit - stay.entry).total_seconds() > 0
        assert stay.fee is None


def test_occupancy_after_each_gate_event_is_the_cars_truly_inside(day, mall: Mall) -> None:
    truth = [(dt.datetime.fromisoformat(t["entry"]), dt.datetime.fromisoformat(t["exit"]))
             for t in day.truth.parking_stays]
    rows = [o for o in run(day.events, ParkingLayout.of(mall)) if isinstance(o, ParkingOccupancy)]
    assert len(rows) == 2 * len(truth)
    after_each_moment = {row.ts: row for row in rows}  # cars can pass both gates in the same second
    for row in list(after_each_moment.values())[::20]:
        assert row.occupancy == sum(entry <= row.ts < exit for entry, exit in truth), row.ts
    assert max(row.occupancy for row in rows) > 50 and rows[-1].occupancy == 0
    assert {row.capacity for row in rows} == {450}


def test_the_fee_rule_prices_each_finished_stay(mall: Mall) -> None:
    def two_per_started_hour(stay: ParkingStay) -> Decimal:
        return Decimal(2) * -(-int(stay.duration_s) // 3600)

    outputs = run([gate("沪A12345", "entry", 0), gate("沪A12345", "exit", 150)], ParkingLayout.of(mall),
                  fee=two_per_started_hour)
    (stay,) = [o for o in outputs if isinstance(o, ParkingStay)]
    assert stay.duration_s == 150 * 60 and stay.fee == Decimal(6)


def test_repeat_reads_are_one_pass_and_an_unknown_exit_keeps_occupancy(mall: Mall) -> None:
    events = [gate("A", "entry", 0), gate("A", "entry", 0.5), gate("B", "entry", 1),
              gate("A", "exit", 30), gate("A", "exit", 30.5), gate("C", "exit", 31)]
    outputs = run(events, ParkingLayout.of(mall))
    stays = [o for o in outputs if isinstance(o, ParkingStay)]
    assert [(s.plate, s.duration_s) for s in stays] == [("A", 1800.0), ("C", None)]
    assert [o.occupancy for o in outputs if isinstance(o, ParkingOccupancy)] == [1, 2, 1, 1]


def test_a_filling_car_park_alerts_once_until_it_empties_below_the_clear_line(mall: Mall) -> None:
    layout = ParkingLayout("m", {"P": 10}, ParkingConfig(alert_share=0.8, clear_share=0.5))
    plates = [f"P{i}" for i in range(10)]
    fill = [gate(p, "entry", i, "P") for i, p in enumerate(plates)]
    drain = [gate(p, "exit", 20 + i, "P") for i, p in enumerate(plates[:6])]
    refill = [gate(p, "entry", 40 + i, "P") for i, p in enumerate(plates[:6])]
    alerts = [o for o in run(fill + drain + refill, layout) if isinstance(o, Alert)]
    assert [(a.kind, a.ts) for a in alerts] == [("car_park_full", fill[8].ts), ("car_park_full", refill[4].ts)]
    assert "9 of 10" in alerts[0].message


def test_thresholds_must_clear_below_the_alert() -> None:
    with pytest.raises(ValueError, match="clear_share"):
        ParkingConfig(alert_share=0.8, clear_share=0.9)


def test_a_state_restored_from_its_snapshot_goes_on_as_if_it_never_stopped(day, mall: Mall) -> None:
    layout = ParkingLayout.of(mall)
    state, outputs = ParkingState(), []
    for number, event in enumerate(e for e in day.events if isinstance(e, ParkingEvent)):
        if number % 97 == 0:
            state = parking_from_bytes(parking_to_bytes(state))
        state, emitted = apply_parking_event(state, event, event.ts, layout)
        outputs += emitted
    assert outputs == run(day.events, layout)
