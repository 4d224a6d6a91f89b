"""The parking core against a simulated day: occupancy and stays as they really were, full-park alerts once;
what the exit gate charges."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from mallstream.settings import Mall, load
from mallstream.simulators.mallday import MallDay, simulate
from mallstream.simulators.members import vip_members
from mallstream.streams.core.parking import (
    ParkingConfig,
    ParkingLayout,
    ParkingOccupancy,
    ParkingState,
    ParkingStay,
    apply_parking_event,
    normalise_plate,
)
from mallstream.streams.core.parking_fees import at_exit
from mallstream.streams.core.rules import parse_rules
from mallstream.streams.core.snapshots import parking_from_bytes, parking_to_bytes
from mallstream.streams.master_data import load_master_data, write_master_data
from mallstream.streams.records import Alert, ParkingEvent, ParkingSettlement
from tests.conftest import EXAMPLE_CONFIG

DAY = MallDay(visitors=6000, seed=5)
T0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def mall() -> Mall:
    return load(EXAMPLE_CONFIG).malls[0]


@pytest.fixture(scope="module")
def day(mall: Mall):
    return simulate(mall, DAY)


def run(events, layout: ParkingLayout) -> list:
    state, outputs = ParkingState(), []
    for event in (e for e in events if isinstance(e, ParkingEvent)):
        state, emitted = apply_parking_event(state, event, event.ts, layout)
        outputs += emitted
    return outputs


def gate(plate: str, direction: str, minutes: float, park: str = "P-B2") -> ParkingEvent:
    return ParkingEvent(
        gate_id=f"G-{direction}",
        car_park_id=park,
        plate=plate,
        direction=direction,
        ts=T0 + dt.timedelta(minutes=minutes),
    )


def test_stays_are_the_true_stays(day, mall: Mall) -> None:
    stays = [o for o in run(day.events, ParkingLayout.of(mall)) if isinstance(o, ParkingStay)]
    assert len(stays) == len(day.truth.parking_stays) > 0
    assert {(s.plate, s.car_park_id, s.entry.isoformat(), s.exit.isoformat()) for s in stays} == {
        (t["plate"], t["car_park"], t["entry"], t["exit"]) for t in day.truth.parking_stays
    }
    for stay in stays:
        assert stay.duration_s == (stay.exit - stay.entry).total_seconds() > 0
        assert stay.fee is None


def test_occupancy_after_each_gate_event_is_the_cars_truly_inside(day, mall: Mall) -> None:
    truth = [
        (dt.datetime.fromisoformat(t["entry"]), dt.datetime.fromisoformat(t["exit"])) for t in day.truth.parking_stays
    ]
    rows = [o for o in run(day.events, ParkingLayout.of(mall)) if isinstance(o, ParkingOccupancy)]
    assert len(rows) == 2 * len(truth)
    after_each_moment = {row.ts: row for row in rows}  # cars can pass both gates in the same second
    for row in list(after_each_moment.values())[::20]:
        assert row.occupancy == sum(entry <= row.ts < exit for entry, exit in truth), row.ts
    assert max(row.occupancy for row in rows) > 50 and rows[-1].occupancy == 0
    assert {row.capacity for row in rows} == {450}


PARKING_RULES = parse_rules(
    """
parking:
  fee_table: [{up_to_minutes: 30, fee: 0}, {up_to_minutes: 120, fee: 10}]
  beyond_every_minutes: 60
  beyond_fee: 5
  free_when_day_spend: 200
""",
    "rules.yaml",
    1,
).parking
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_at_the_exit_anyone_pays_the_fee_table_and_a_members_car_is_sent_to_the_card(mall: Mall) -> None:
    events = [
        gate("沪A12345", "entry", 0),
        gate("沪A12345", "exit", 150),
        gate("沪A·D00042", "entry", 10),
        gate("沪A·D00042", "exit", 100),
        gate("沪B99999", "exit", 120),
    ]
    stranger, member, unknown_entry = [o for o in run(events, ParkingLayout.of(mall)) if isinstance(o, ParkingStay)]

    priced, request = at_exit(stranger, None, PARKING_RULES, SHANGHAI)
    assert request is None and priced.fee == Decimal("15.00") and priced.member_id == ""  # 10 + one started hour
    named, request = at_exit(member, "M000042", PARKING_RULES, SHANGHAI)
    assert named.fee is None and named.member_id == "M000042", "the card decides what a member pays"
    assert request == ParkingSettlement(
        stay_id=member.stay_id,
        member_id="M000042",
        mall_id=member.mall_id,
        car_park_id="P-B2",
        plate="沪A·D00042",
        entry=member.entry,
        exit=member.exit,
        business_day=dt.date(2026, 11, 23),
    )
    assert at_exit(member, "M000042", PARKING_RULES, SHANGHAI) == (named, request), "the same stay, the same request"
    assert at_exit(unknown_entry, None, PARKING_RULES, SHANGHAI) == (unknown_entry, None), "no length, no fee"
    assert at_exit(unknown_entry, "M1", PARKING_RULES, SHANGHAI)[1] is None
    assert at_exit(stranger, None, None, SHANGHAI) == (stranger, None), "no parking rules, no fee"
    assert at_exit(member, "M000042", None, SHANGHAI)[1] is None


def test_the_business_day_of_a_settlement_is_the_exits_local_date(mall: Mall) -> None:
    late = [gate("沪AD1", "entry", 4 * 60), gate("沪AD1", "exit", 8 * 60 + 30)]  # 22:00 to 02:30 in Shanghai
    (stay,) = [o for o in run(late, ParkingLayout.of(mall)) if isinstance(o, ParkingStay)]
    assert at_exit(stay, "M1", PARKING_RULES, SHANGHAI)[1].business_day == dt.date(2026, 11, 24)


def test_the_simulated_vips_cars_are_sent_to_their_cards(day, mall: Mall, tmp_path) -> None:
    path = tmp_path / "members.csv"
    write_master_data(path, vip_members(mall, DAY))
    master = load_master_data(path)
    stays = [o for o in run(day.events, ParkingLayout.of(mall)) if isinstance(o, ParkingStay)]
    exits = [at_exit(stay, master.member_of_plate(stay.plate), PARKING_RULES, SHANGHAI) for stay in stays]
    assert (
        {request.member_id for _, request in exits if request}
        == {stay["member_id"] for stay in day.truth.parking_stays if stay["member_id"]}
        != set()
    )
    assert all(stay.fee is not None for stay, request in exits if request is None)


def test_plates_are_matched_upper_case_without_separators() -> None:
    assert {normalise_plate(p) for p in ("沪A·D00042", "沪ad-00042", " 沪A D00042 ", "沪A.D00042")} == {"沪AD00042"}
    assert ParkingStay("m", "P", "x" * 200, None, T0, "G", None).stay_id.startswith("P:")
    assert len(ParkingStay("m", "P", "x" * 200, None, T0, "G", None).stay_id) <= 100


def test_repeat_reads_are_one_pass_and_an_unknown_exit_keeps_occupancy(mall: Mall) -> None:
    events = [
        gate("A", "entry", 0),
        gate("A", "entry", 0.5),
        gate("B", "entry", 1),
        gate("A", "exit", 30),
        gate("A", "exit", 30.5),
        gate("C", "exit", 31),
    ]
    outputs = run(events, ParkingLayout.of(mall))
    stays = [o for o in outputs if isinstance(o, ParkingStay)]
    assert [(s.plate, s.duration_s) for s in stays] == [("A", 1800.0), ("C", None)]
    assert [o.occupancy for o in outputs if isinstance(o, ParkingOccupancy)] == [1, 2, 1, 1]


def test_a_repeat_read_is_known_by_its_own_car_parks_clock_and_old_exits_are_forgotten(mall: Mall) -> None:
    """In a backlog one car park's reads may be a month ahead of another's, in the same mall state."""
    layout = ParkingLayout.of(mall)
    state = ParkingState()
    month = 60 * 24 * 30
    events = [
        *(gate(f"X{i}", "exit", i) for i in range(20)),  # exits long past: forgotten once the window moves on
        gate("A", "entry", 25),
        gate("A", "exit", 30),
        gate("Z", "exit", month, park="P-FAR"),  # another car park, far ahead
        gate("A", "exit", 30.5),  # the same exit read again
    ]
    stays = []
    for event in events:
        state, outputs = apply_parking_event(state, event, event.ts, layout)
        stays += [o.plate for o in outputs if isinstance(o, ParkingStay)]
    assert stays == [*(f"X{i}" for i in range(20)), "A", "Z"]
    assert set(state.car_parks["P-B2"].last_exit) == {"A"}


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
