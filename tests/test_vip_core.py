"""The pure VIP core: dedup, presence without flapping, alert policy, visit paths and spend."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mallstream.settings import Device, Mall, QuietHours, TierRule, VipPolicy, load
from mallstream.simulators.mallday import FaultKnobs, MallDay, simulate
from mallstream.streams.core.vip import (
    ARRIVAL,
    AT_COUNTER,
    LEAVING,
    Member,
    Step,
    UnknownTags,
    VipPlaces,
    VipState,
    add_purchase,
    count_unknown,
    on_read,
    on_tick,
)
from mallstream.streams.records import Alert, PosTransaction, RfidRead, decode, encode
from tests.conftest import EXAMPLE_CONFIG

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 23, 11, 0, tzinfo=SHANGHAI)
EPC = "E2801160000000000000002A"
ALICE = Member("M000042", "vip", name="Alice", top_brands=("Lancome", "Dior"), top_categories=("beauty",))
POLICY = VipPolicy()


@pytest.fixture(scope="module")
def mall() -> Mall:
    """The example mall with a second reader at the north gate, as a busy door would have."""
    example = load(EXAMPLE_CONFIG).malls[0]
    second = Device(id="R-north-2", place="E-north", protocol="chafon-288m")
    return example.model_copy(update={"rfid_readers": [*example.rfid_readers, second]})


@pytest.fixture(scope="module")
def places(mall: Mall) -> VipPlaces:
    return VipPlaces.of(mall)


def read(reader: str, seconds: float, antenna: int = 1, duplicate: bool = False, epc: str = EPC) -> RfidRead:
    return RfidRead(
        reader_id=reader,
        antenna=antenna,
        epc=epc,
        rssi_dbm=-50,
        ts=T0 + dt.timedelta(seconds=seconds),
        duplicate=duplicate,
    )


class Run:
    """One member's state driven through the core, collecting what it emits; decisions happen at read time."""

    def __init__(self, places: VipPlaces, policy: VipPolicy = POLICY, member: Member = ALICE) -> None:
        self.places, self.policy, self.member = places, policy, member
        self.state: VipState | None = None
        self.alerts, self.visits = [], []

    def keep(self, result: tuple[VipState, Step]) -> Step:
        self.state, step = result
        self.alerts += step.alerts
        self.visits += step.visits
        return step

    def read(self, reader: str, seconds: float, **kwargs) -> Step:
        event = read(reader, seconds, **kwargs)
        return self.keep(on_read(self.state, event, self.member, event.ts, self.places, self.policy))

    def tick(self, seconds: float) -> Step:
        now = T0 + dt.timedelta(seconds=seconds)
        return self.keep(on_tick(self.state, self.member, now, self.places, self.policy))

    def kinds(self) -> list[tuple[str, str]]:
        return [(alert.kind, alert.zone_id) for alert in self.alerts]


def test_a_storm_of_duplicates_gives_one_arrival_alert(places: VipPlaces) -> None:
    run = Run(places)
    for i in range(50 * 60):  # 50 reads/s for a minute, over 2 readers x 2 antennas, some flagged by the driver
        run.read(("R-north", "R-north-2")[i % 2], i / 50, antenna=1 + (i // 2) % 2, duplicate=i % 7 == 0)
    run.tick(60 + POLICY.presence.absence_timeout_s)

    assert run.kinds() == [(ARRIVAL, "E-north"), (LEAVING, "E-north")]
    [visit] = run.visits
    assert [stop.place for stop in visit.path] == ["E-north"]
    # each reader counts the tag once per dedup window: 60 s / 2 s, on both readers
    assert visit.reads == 2 * 60 / POLICY.presence.dedup_window_s


def test_bouncing_between_readers_does_not_flap(places: VipPlaces) -> None:
    run = Run(places)
    run.read("R-S101", 0)
    for second in range(1, 120):  # standing between the counter and the lounge door: both read the tag
        run.read(("R-vip", "R-S101")[second % 2], second)
    assert [stop.place for stop in run.state.presence.stops] == ["S101"]
    for second in range(120, 140):  # walked into the lounge: only its reader sees the tag now
        run.read("R-vip", second)
    assert [stop.place for stop in run.state.presence.stops] == ["S101", "Z-vip"]
    assert run.kinds() == [(AT_COUNTER, "S101")]


def test_cooldown_per_member_and_zone(places: VipPlaces) -> None:
    run = Run(places, VipPolicy(tiers={"vip": TierRule(cooldown_s=1800)}))
    run.read("R-north", 0)
    run.read("R-S101", 60)
    run.read("R-vip", 120)
    run.read("R-S101", 600)  # back at the counter within the cooldown
    run.read("R-north", 700)
    run.tick(700 + POLICY.presence.exit_timeout_s)  # left through the north gate
    run.read("R-north", 900)  # back after 15 minutes: a new visit, but the arrival cooldown holds
    run.read("R-S101", 1000)
    run.read("R-vip", 1100)
    run.read("R-S101", 1900)  # 31 minutes after the first counter alert: staff are told again

    assert run.kinds() == [(ARRIVAL, "E-north"), (AT_COUNTER, "S101"), (LEAVING, "E-north"), (AT_COUNTER, "S101")]
    assert [visit.visit_number for visit in run.visits] == [1]


def test_leaving_through_a_door_is_detected_soon_and_elsewhere_after_the_absence_timeout(places: VipPlaces) -> None:
    tuning = POLICY.presence
    run = Run(places)
    run.read("R-north", 0)
    run.read("R-S101", 60)
    run.read("R-north", 600)
    assert not run.tick(600 + tuning.exit_timeout_s - 1).alerts
    [leaving] = run.tick(600 + tuning.exit_timeout_s).alerts
    assert (leaving.kind, leaving.zone_id) == (LEAVING, "E-north")
    assert leaving.ts == T0 + dt.timedelta(seconds=600)
    assert leaving.decided_at == T0 + dt.timedelta(seconds=600 + tuning.exit_timeout_s)

    run.read("R-S101", 9000)  # a later visit seen only at the counter: it may still be shopping elsewhere
    assert not run.tick(9000 + tuning.exit_timeout_s).visits
    [visit] = run.tick(9000 + tuning.absence_timeout_s).visits
    assert [stop.place for stop in visit.path] == ["S101"] and visit.visit_number == 2


def test_a_read_arriving_after_its_visit_closed_does_not_open_another(places: VipPlaces) -> None:
    run = Run(places, VipPolicy(tiers={"vip": TierRule(cooldown_s=0)}))
    run.read("R-north", 0)
    run.read("R-S101", 60)
    run.read("R-north", 300)
    run.tick(300 + POLICY.presence.exit_timeout_s)
    run.read("R-north", 310)  # held up in the gateway
    assert not run.state.presence.stops
    assert [kind for kind, _ in run.kinds()] == [ARRIVAL, AT_COUNTER, LEAVING]


def test_unknown_tags_are_counted_never_alerted() -> None:
    tally = UnknownTags()
    for i, epc in enumerate(["AAAA0001", "AAAA0001", "BBBB0002"]):
        tally = count_unknown(tally, read("R-north", i, epc=epc))
    tally = count_unknown(tally, read("R-north", 3, epc="BBBB0002", duplicate=True))
    assert (tally.reads, tally.tags) == (3, {"AAAA0001": 2, "BBBB0002": 1})


def test_tiers_without_a_rule_get_no_alerts_but_their_visits_are_tracked(places: VipPlaces) -> None:
    run = Run(places, member=Member("M000007", "gold"))
    run.read("R-north", 0)
    run.tick(POLICY.presence.absence_timeout_s)
    assert not run.alerts and len(run.visits) == 1


def test_quiet_hours_hold_alerts_in_the_malls_local_time(places: VipPlaces) -> None:
    quiet = VipPolicy(quiet_hours=[QuietHours(start=dt.time(21), end=dt.time(11, 30))])
    run = Run(places, quiet)
    run.read("R-north", 0)  # 11:00 Shanghai, 03:00 UTC
    run.read("R-S101", 45 * 60)  # 11:45
    assert run.kinds() == [(AT_COUNTER, "S101")]
    assert QuietHours(start=dt.time(21), end=dt.time(11, 30)).covers(dt.time(23, 59))


def test_alerts_carry_preferences_but_the_name_only_when_the_tier_allows(places: VipPlaces) -> None:
    [anonymous] = Run(places).read("R-S101", 0).alerts
    assert (anonymous.member_id, anonymous.tier, anonymous.name) == ("M000042", "vip", None)
    assert anonymous.top_brands == ("Lancome", "Dior") and anonymous.top_categories == ("beauty",)
    assert anonymous.matching_brands == ("Lancome",)
    assert "Alice" not in anonymous.message
    named = Run(places, VipPolicy(tiers={"vip": TierRule(include_name=True)})).read("R-S101", 0).alerts[0]
    assert named.name == "Alice" and "Alice" in named.message
    assert anonymous.ts == named.decided_at == T0


def test_alerts_are_wire_records_that_round_trip(places: VipPlaces) -> None:
    [alert] = Run(places).read("R-S101", 0).alerts
    assert isinstance(alert, Alert) and decode(Alert, encode(alert)) == alert
    assert (alert.kind, alert.zone_id, alert.member_id, alert.ts) == (AT_COUNTER, "S101", "M000042", T0)


def test_spend_joins_the_visit_it_falls_in_once(places: VipPlaces) -> None:
    run = Run(places)
    run.state, _ = add_purchase(None, ALICE.member_id, 12_000, T0 - dt.timedelta(minutes=20), txn_id="t0")
    run.read("R-north", 0)
    for txn_id in ("t1", "t1"):  # a redelivered receipt counts once
        run.keep(add_purchase(run.state, ALICE.member_id, 30_050, T0 + dt.timedelta(minutes=5), txn_id=txn_id))
    [visit] = run.tick(POLICY.presence.absence_timeout_s).visits
    assert (visit.spend_cents, visit.txn_ids) == (42_050, ["t0", "t1"])

    late = add_purchase(run.state, ALICE.member_id, -50, T0 + dt.timedelta(minutes=6), txn_id="refund")[1]
    assert [(v.visit_id, v.spend_cents) for v in late.visits] == [(visit.visit_id, 42_000)]


@pytest.mark.parametrize("closed_after_s", [0, 3600, 7200], ids=["closed-at-once", "closed-1h-late", "closed-2h-late"])
def test_spend_after_the_last_read_joins_that_visit_whenever_the_visit_was_closed(
    places: VipPlaces, closed_after_s: int
) -> None:
    """In a replay the timer, the reads and the receipts race: the visit's spend must not depend on who wins."""
    lead = POLICY.presence.absence_timeout_s
    run = Run(places)
    run.read("R-north", 0)
    run.read("R-S101", 60)
    [visit] = run.tick(60 + lead + closed_after_s).visits
    for minutes, cents, txn_id in ((90, 30_000, "sale"), (150, -30_000, "return"), (170, 1_000, "coffee")):
        at = T0 + dt.timedelta(minutes=minutes)  # readers lost the member; the tills did not
        run.keep(add_purchase(run.state, ALICE.member_id, cents, at, txn_id=txn_id, lead_s=lead))
    assert (run.visits[-1].visit_id, run.visits[-1].spend_cents) == (visit.visit_id, 1_000)
    assert run.visits[-1].txn_ids == ["coffee", "return", "sale"]  # in id order, whichever worker saw them first

    run.read("R-north", 8 * 3600)  # back later the same day: a new visit, with spend of its own
    run.keep(
        add_purchase(run.state, ALICE.member_id, 500, T0 + dt.timedelta(hours=8, minutes=5), txn_id="next", lead_s=lead)
    )
    [second] = run.tick(8 * 3600 + lead + 60).visits
    assert second.visit_id != visit.visit_id and (second.spend_cents, second.txn_ids) == (500, ["next"])


def test_state_round_trips_through_msgpack(places: VipPlaces) -> None:
    run = Run(places)
    run.read("R-north", 0)
    run.read("R-S101", 30)
    run.read("R-vip", 31)
    run.keep(add_purchase(run.state, ALICE.member_id, 100, T0, txn_id="t"))
    encoded = msgspec.msgpack.encode(run.state)
    assert msgspec.msgpack.decode(encoded, type=VipState) == run.state


reads_of_one_visit = st.lists(
    st.tuples(
        st.sampled_from(["R-north", "R-north-2", "R-S101", "R-vip", "R-elsewhere"]),
        st.integers(1, 4),
        st.floats(0, 1800, allow_nan=False),
        st.booleans(),
    ),
    min_size=1,
    max_size=60,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(reads=reads_of_one_visit, copies=st.lists(st.integers(1, 3), min_size=60, max_size=60), order=st.randoms())
def test_no_interleaving_or_duplication_of_reads_gives_two_arrivals(places: VipPlaces, reads, copies, order) -> None:
    """Reads of one visit (half an hour, shorter than the absence timeout) in any order, any number of times."""
    events = [
        read(reader, t, antenna, duplicate)
        for (reader, antenna, t, duplicate), n in zip(reads, copies, strict=False)
        for _ in range(n)
    ]
    order.shuffle(events)
    run = Run(places, VipPolicy(tiers={"vip": TierRule(cooldown_s=0)}))
    for event in events:
        run.keep(on_read(run.state, event, ALICE, event.ts, places, run.policy))
    assert [kind for kind, _ in run.kinds()].count(ARRIVAL) <= 1
    if run.state.presence.stops:
        run.tick(1800 + POLICY.presence.absence_timeout_s)
        assert len(run.visits) == 1


def test_a_simulated_day_reconstructs_vip_paths_and_spend(mall: Mall, places: VipPlaces) -> None:
    """Replay a simulated day's reads and receipts through the core, ticking every minute.

    Readers stand only at some places (here the north gate, the VIP lounge and the
    Lancome counter), so the core can only know the part of a path that passes them:
    the truth is the visit's entrance, stops and exit restricted to places with a
    reader, with a place repeated back to back counted once (coming back to the same
    counter with no reader in between looks like never having left it). Visits that
    pass no reader are invisible, and must stay so.
    """
    example = load(EXAMPLE_CONFIG).malls[0]  # the simulator's readers: one per watched place
    day = simulate(
        example, MallDay(visitors=4000, vip_share=0.05, staff=0, seed=3, faults=FaultKnobs(duplicate_read_rate=0.1))
    )
    vip_truth = {visit["member_id"]: visit for visit in day.truth.vip_visits}
    members = {visit["epc"]: Member(visit["member_id"], "vip") for visit in day.truth.vip_visits}
    member_of = {member.member_id: member for member in members.values()}
    run_states: dict[str, VipState] = {}
    alerts, summaries, spent = [], defaultdict(list), defaultdict(int)

    def keep(member_id: str, result: tuple[VipState, Step]) -> None:
        run_states[member_id], step = result
        alerts.extend(step.alerts)
        for summary in step.visits:
            summaries[summary.member_id].append(summary)

    next_tick = None
    for event in day.events:
        now = event.ts
        while next_tick is not None and next_tick <= now:
            for member_id, state in run_states.items():
                keep(member_id, on_tick(state, member_of[member_id], next_tick, places, POLICY))
            next_tick += dt.timedelta(minutes=1)
        next_tick = next_tick or now
        if isinstance(event, RfidRead):
            member = members[event.epc]
            keep(member.member_id, on_read(run_states.get(member.member_id), event, member, now, places, POLICY))
        elif isinstance(event, PosTransaction) and event.kind == "sale" and event.member_id in vip_truth:
            spent[event.member_id] += int(event.total * 100)
            keep(
                event.member_id,
                add_purchase(
                    run_states.get(event.member_id), event.member_id, int(event.total * 100), now, txn_id=event.txn_id
                ),
            )
    closing = next_tick + dt.timedelta(seconds=POLICY.presence.absence_timeout_s)
    for member_id, state in list(run_states.items()):
        keep(member_id, on_tick(state, member_of[member_id], closing, places, POLICY))

    watched = set(places.reader_place.values())
    observable = {member_id: path for member_id, visit in vip_truth.items() if (path := truth_path(visit, watched))}
    assert len(observable) >= 100
    assert not set(summaries) - set(observable), "a visit past no reader was reported"
    matched = [
        member_id
        for member_id, path in observable.items()
        if [[stop.place for stop in s.path] for s in summaries[member_id]] == [path]
    ]
    assert len(matched) >= 0.95 * len(observable)
    assert all(summaries[m][0].spend_cents == spent[m] for m in matched)
    # One greeting per visit through the north gate. A reader cannot tell in from out: a VIP who came
    # in through a door without one is first seen leaving by the north gate, and is greeted there too.
    arrivals = sorted(alert.member_id for alert in alerts if alert.kind == ARRIVAL)
    assert arrivals == sorted(m for m, path in observable.items() if path[0] == "E-north")


def truth_path(visit: dict, watched: set[str]) -> list[str]:
    """The places of a true visit a reader could see, in order, back-to-back repeats once."""
    places = [visit["entrance"], *(stop["place"] for stop in visit["stops"]), visit["exit"]]
    path: list[str] = []
    for place in places:
        if place in watched and (not path or path[-1] != place):
            path.append(place)
    return path
