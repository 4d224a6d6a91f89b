"""Each agent built from a stub of the worker (tests/support/context.py), its lane steps driven without a broker.

The agents take a small context (streams/context.py), not the hub: these tests show it is
all they need, and pin what a batch does to the stores and the topics.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
import pytest
from aiokafka import TopicPartition

from mallstream.settings import Mall, Settings, load
from mallstream.streams import topics, vip_agents
from mallstream.streams.core.rules import RuleFile
from mallstream.streams.core.vip import Member
from mallstream.streams.customer_agents import CustomerAgents
from mallstream.streams.footfall_agents import FootfallAgents
from mallstream.streams.lanes import BatchLane
from mallstream.streams.loyalty_agents import LoyaltyAgent
from mallstream.streams.master_data import MasterData
from mallstream.streams.records import (
    Alert,
    FootfallBatch,
    FootfallMark,
    FootfallTick,
    ManualOperation,
    ParkingBatch,
    ParkingEvent,
    PosTransaction,
    PresenceInput,
    RfidRead,
    ScheduleTick,
    VipMark,
    decode,
    identity,
)
from mallstream.streams.vip_agents import VipAgents
from tests.conftest import EXAMPLE_CONFIG
from tests.support.context import StubContext, feed, held

T0 = dt.datetime(2025, 3, 4, 2, 0, tzinfo=dt.UTC)  # long past: event time, not the wall clock, decides


@pytest.fixture
def settings(tmp_path) -> Settings:
    loaded = load(EXAMPLE_CONFIG)
    return loaded.model_copy(update={"worker": loaded.worker.model_copy(update={"state_dir": tmp_path / "worker"})})


@pytest.fixture
def context(settings, tmp_path) -> StubContext:
    return StubContext(settings, tmp_path / "lanes")


def malls_lane(context: StubContext) -> tuple[FootfallAgents, BatchLane, int]:
    """The footfall and parking agents on a malls lane holding the first mall's partition."""
    book = RuleFile(context.settings.resolve(context.settings.rules.file)).current()
    lane = context.lane("malls")
    agents = FootfallAgents(context, MasterData(), lane, context.lane("routes"), lambda: book)
    partition = topics.partition_of(context.settings.malls[0].id.encode(), context.settings.kafka.partitions)
    held(lane, partition)
    return agents, lane, partition


def test_every_agent_is_built_from_the_stub_and_registers_its_steps_timers_and_stores(context):
    master = MasterData()
    members, malls, presence, routes = (context.lane(name) for name in ("members", "malls", "presence", "routes"))
    loyalty = LoyaltyAgent(context, master, members)
    CustomerAgents(context, master, members)
    FootfallAgents(context, master, malls, routes, loyalty.rule_book)
    VipAgents(context, master, presence, routes)
    assert set(members.steps) == {spec.name for spec in topics.MEMBER_INPUTS}
    assert set(malls.steps) == {spec.name for spec in topics.MALL_INPUTS}
    assert set(presence.steps) == {spec.name for spec in topics.PRESENCE_INPUTS}
    assert set(members.stores) == {"cards", "customer_states"} and set(presence.stores) == {"vip_states"}
    assert set(malls.stores) == {"footfall_states", "parking_states"}
    assert {"loyalty_schedule", "customer_tick", "footfall_tick", "vip_tick"} <= set(context.timers)
    assert context.agents == {"vip_deliver": topics.ALERTS.name}  # no webhook configured: no notification agent


def gate(mall: Mall, direction: str, minutes: int) -> ParkingEvent:
    """A gate event of the mall's first car park as the router sends it on: its mall and id stamped."""
    car_park = mall.car_parks[0]
    event = ParkingEvent(
        gate_id=car_park.gates[0].id,
        car_park_id=car_park.id,
        plate="沪A00001",
        direction=direction,
        ts=T0 + dt.timedelta(minutes=minutes),
        mall_id=mall.id,
    )
    return msgspec.structs.replace(event, event_id=identity(event))


def test_a_batch_of_gate_events_gives_one_stay_once_however_often_it_comes(context):
    agents, lane, partition = malls_lane(context)
    mall = context.settings.malls[0]
    batch = ParkingBatch(events=[gate(mall, "entry", 0), gate(mall, "exit", 150)])
    for _ in range(2):  # the second time as after a crash before the offsets were committed
        asyncio.run(feed(lane, topics.PARKING_BY_MALL.name, [(mall.id.encode(), batch)], partition))
    [stay] = context.topic(topics.PARKING_STAYS).records()
    assert (stay.plate, stay.car_park_id, stay.duration_s) == ("沪A00001", mall.car_parks[0].id, 150 * 60)
    assert stay.fee is not None and stay.fee > 0  # no member's car: the rule file's fee table prices it
    assert agents.parking_store.partition(partition).get(mall.id.encode()) is not None
    assert context.dead_letters == []


def test_a_batch_of_ticks_closes_its_interval_once_the_clock_passes_it_with_the_mall_state_written_once(context):
    agents, lane, partition = malls_lane(context)
    mall = context.settings.malls[0]
    counter = mall.people_counters[0].id
    ticks = [
        FootfallTick(counter_id=counter, ts=T0 + dt.timedelta(minutes=minute), count_in=minute, mall_id=mall.id)
        for minute in range(1, 6)
    ]
    # the idle timer's mark (no source) moves the quiet mall's clock an hour on
    mark = FootfallMark(mall_id=mall.id, ts=T0 + dt.timedelta(hours=2))
    asyncio.run(
        feed(lane, topics.FOOTFALL_BY_MALL.name, [(mall.id.encode(), FootfallBatch(items=[*ticks, mark]))], partition)
    )
    rows = [row for batch in context.topic(topics.FOOTFALL_ROLLUPS).records() for row in batch.rows]
    by_counter = [row for row in rows if row.level == "counter" and row.key == counter]
    assert sum(row.visitors_in for row in by_counter) == sum(range(1, 6))
    assert not any(row.late for row in rows)
    assert context.counters["footfall_events"] == 5
    # one changelog record for the mall's state, whatever the batch held
    assert list(agents.footfall_store.partition(partition).changed) == [mall.id.encode()]
    assert context.dead_letters == []


def test_a_message_that_cannot_be_decoded_is_a_dead_letter_and_the_rest_of_the_batch_goes_on(context):
    _, lane, partition = malls_lane(context)
    mall = context.settings.malls[0]
    garbage = FootfallMark(mall_id=mall.id, ts=T0)  # a mark where a parking batch belongs
    batch = ParkingBatch(events=[gate(mall, "entry", 0), gate(mall, "exit", 90)])
    keyed = [(mall.id.encode(), garbage), (mall.id.encode(), batch)]
    asyncio.run(feed(lane, topics.PARKING_BY_MALL.name, keyed, partition))
    assert [stage for stage, _ in context.dead_letters] == ["parking"]
    assert [stay.duration_s for stay in context.topic(topics.PARKING_STAYS).records()] == [90 * 60]


# -- two malls: each card's days, schedules and desk work follow its own mall ------------------------

BERLIN = "mall-berlin"
#: 20:00 UTC: already the next day in Shanghai (the first mall), still this day in Berlin
EVENING = dt.datetime(2026, 3, 10, 20, 0, tzinfo=dt.UTC)


def loyalty_of_two_malls(settings: Settings, tmp_path) -> tuple[StubContext, LoyaltyAgent, BatchLane, int]:
    """The loyalty agent of a hub whose second mall is in Berlin, holding member M-B's partition."""
    first = settings.malls[0]
    second = first.model_copy(update={"id": BERLIN, "name": "Berlin", "timezone": "Europe/Berlin"})
    context = StubContext(settings.model_copy(update={"malls": [first, second]}), tmp_path / "lanes")
    lane = context.lane("members")
    agent = LoyaltyAgent(context, MasterData(birthdays={"M-B": dt.date(1990, 3, 11)}), lane)
    partition = topics.partition_of(b"M-B", settings.kafka.partitions)
    held(lane, partition)
    return context, agent, lane, partition


def entries(context: StubContext, cause: str, rule_id: str) -> list[tuple[str, str]]:
    """(mall, business day) of the ledger entries of ``cause`` by ``rule_id`` sent so far."""
    return [
        (entry.mall_id, entry.business_day.isoformat())
        for entry in context.topic(topics.LEDGER).records()
        if entry.cause == cause and entry.rule_id == rule_id
    ]


def test_desk_work_grants_and_schedules_of_a_second_malls_member_use_its_mall_id_and_time_zone(settings, tmp_path):
    context, agent, lane, partition = loyalty_of_two_malls(settings, tmp_path)
    store = settings.malls[0].stores[0].id
    receipt = PosTransaction(
        txn_id="B-1",
        store_id=store,
        workstation_id="T1",
        seq=1,
        ts=EVENING,
        business_day=dt.date(2026, 3, 10),
        kind="sale",
        total=Decimal("10.00"),
        member_id="M-B",
        mall_id=BERLIN,
    )
    desk = ManualOperation(
        request_id="r1",
        op_id="op-1",
        member_id="M-B",
        action="adjust",
        by="desk",
        why="goodwill",
        ts=EVENING,
        points=10,
    )
    churn = Alert(
        alert_id="M-B:churn_risk:1", mall_id=BERLIN, kind="churn_risk", ts=EVENING, member_id="M-B", message="0.3"
    )
    asyncio.run(feed(lane, topics.POS_BY_MEMBER.name, [(b"M-B", receipt)], partition))
    asyncio.run(feed(lane, topics.LOYALTY_REQUESTS.name, [(b"M-B", desk)], partition))
    asyncio.run(feed(lane, topics.CUSTOMER_SIGNALS.name, [(b"M-B", churn)], partition))
    # Shanghai's day would be the 11th
    assert entries(context, "points_adjusted", "manual") == [(BERLIN, "2026-03-10")]
    assert entries(context, "points_earned", "retention-offer") == [(BERLIN, "2026-03-10")]
    assert context.audits[-1].mall_id == BERLIN

    # the partition's clock (the receipt: the 11th in Shanghai, the 10th in Berlin) reaches a day start in each
    # zone; Shanghai's runs no card of Berlin's, Berlin's gives the birthday-week gift
    asyncio.run(agent._schedule_due_days())
    ticks = [decode(ScheduleTick, value) for _, value in context.topic(topics.LOYALTY_REQUESTS).sent]
    assert sorted((tick.timezone, tick.now.isoformat()) for tick in ticks) == [
        ("Asia/Shanghai", "2026-03-11T00:00:00+08:00"),
        ("Europe/Berlin", "2026-03-10T00:00:00+01:00"),
    ]
    for tick in sorted(ticks, key=lambda tick: tick.timezone):
        asyncio.run(feed(lane, topics.LOYALTY_REQUESTS.name, [(b"M-B", tick)], partition))
        gifts = [entry for entry in context.topic(topics.LEDGER).records() if entry.rule_id == "birthday-gift"]
        if tick.timezone == "Asia/Shanghai":
            assert gifts == []
    assert {(gift.mall_id, gift.business_day.isoformat()) for gift in gifts} == {(BERLIN, "2026-03-10")}


# -- the day starts run the cards due, not every card -------------------------------------------


def test_day_starts_run_only_the_cards_with_something_due_and_run_those_on_their_day(settings, tmp_path):
    zone = ZoneInfo(settings.malls[0].timezone)
    first_day = dt.date(2025, 3, 3)
    birthday = dt.date(1990, 3, 26)  # its week in 2025: Monday 24 March
    context = StubContext(settings, tmp_path / "lanes")
    lane = context.lane("members")
    agent = LoyaltyAgent(context, MasterData(birthdays={"M-0": birthday}), lane)
    partitions = settings.kafka.partitions
    held(lane, *range(partitions))
    noon = dt.datetime.combine(first_day, dt.time(12), zone)
    members = [f"M-{n}" for n in range(200)]
    for n, member in enumerate(members):
        key = member.encode()
        receipt = PosTransaction(
            txn_id=f"T-{n}",
            store_id=settings.malls[0].stores[0].id,
            workstation_id="T1",
            seq=n,
            ts=noon,
            business_day=first_day,
            kind="sale",
            total=Decimal("10.00"),
            member_id=member,
        )
        asyncio.run(feed(lane, topics.POS_BY_MEMBER.name, [(key, receipt)], topics.partition_of(key, partitions)))
    churn = Alert(
        alert_id="M-1:churn_risk:1",
        mall_id=settings.malls[0].id,
        kind="churn_risk",
        ts=noon,
        member_id="M-1",
        message="0.3",
    )
    asyncio.run(feed(lane, topics.CUSTOMER_SIGNALS.name, [(b"M-1", churn)], topics.partition_of(b"M-1", partitions)))
    (voucher,) = agent.card("M-1").vouchers.values()

    days = [first_day + dt.timedelta(days=n) for n in range(1, 41)]
    for since, day in zip([first_day, *days], days, strict=False):
        tick = ScheduleTick(
            now=dt.datetime.combine(day, dt.time(0), zone),
            since=dt.datetime.combine(since, dt.time(0), zone),
            timezone=str(zone),
        )
        for partition in range(partitions):
            asyncio.run(feed(lane, topics.LOYALTY_REQUESTS.name, [(b"", tick)], partition))

    dated = {
        (entry.cause, entry.member_id, entry.business_day)
        for entry in context.topic(topics.LEDGER).records()
        if entry.txn_id.startswith(("expiry:", "birthday:"))
    }
    expiry_day = voucher.valid_to.astimezone(zone).date() + dt.timedelta(days=1)
    gift_day = dt.date(2025, 3, 24)
    assert {("voucher_expired", "M-1", expiry_day), ("points_earned", "M-0", gift_day)} <= dated
    told = {(n.kind, n.member_id) for n in context.topic(topics.MEMBER_NOTIFICATIONS).records()}
    assert {("voucher_expiring", "M-1"), ("birthday", "M-0")} <= told
    # every card every day would be 200 x 40 = 8,000 runs: here M-1's reminder and expiry, M-0's birthday,
    # and the reminder and expiry of the voucher the birthday gift brought
    assert context.counters["schedule_card_runs"] == 5


# -- VIP leaving: decided for the members due, on a clock no RFID partition lags behind ------------------


class Presence:
    """The VIP agents of a stub worker that holds every partition; what they send on rfid.by_member is delivered
    to the presence lane by hand: reads to their member's partition, marks to every partition (the recording
    topic keeps no partition)."""

    def __init__(self, context: StubContext, master: MasterData) -> None:
        self.context, self.partitions = context, context.settings.kafka.partitions
        self.lane, self.routes = context.lane("presence"), context.lane("routes")
        self.agents = VipAgents(context, master, self.lane, self.routes)
        held(self.lane, *range(self.partitions))
        held(self.routes, *range(self.partitions))

    def route(self, reads: list[RfidRead], source: int) -> None:
        asyncio.run(feed(self.routes, topics.RFID_READS.name, [(b"R-north", read) for read in reads], source))
        self.deliver()

    def tick(self) -> int:
        """The timer, then what it sent delivered; how many marks it sent (one per partition sent to)."""
        asyncio.run(self.agents._tick())
        return self.deliver()

    def deliver(self) -> int:
        by_member = self.context.topic(topics.RFID_BY_MEMBER)
        sent, by_member.sent[:] = list(by_member.sent), []
        marks = 0
        for key, value in sent:
            message = decode(PresenceInput, value)
            marks += isinstance(message, VipMark)
            targets = (
                range(self.partitions) if isinstance(message, VipMark) else [topics.partition_of(key, self.partitions)]
            )
            for partition in targets:
                asyncio.run(feed(self.lane, topics.RFID_BY_MEMBER.name, [(key or b"", message)], partition))
        return marks


def reads(epcs: list[str], at: dt.datetime) -> list[RfidRead]:
    return [RfidRead(reader_id="R-north", antenna=1, epc=epc, rssi_dbm=-50.0, ts=at) for epc in epcs]


def test_vip_leaving_is_decided_for_the_members_due_on_a_clock_that_waits_for_every_rfid_partition(
    context, monkeypatch
):
    monkeypatch.setattr(vip_agents, "IDLE_PARTITION_S", 0.3)
    master = MasterData()
    for n in range(30):
        member = Member(member_id=f"V-{n}", tier="gold")
        master.by_id[member.member_id] = master.by_epc[f"E2{n:06X}"] = member
    vip = Presence(context, master)
    timeout = dt.timedelta(seconds=context.settings.vip.presence.absence_timeout_s)
    visits = context.topic(topics.VIP_VISITS).sent

    vip.route(reads([f"E2{n:06X}" for n in range(29)], T0), source=0)
    vip.tick()
    assert visits == [] and context.counters["vip_present"] == 29  # nobody is due yet
    time.sleep(0.4)  # the partitions without reads are idle now; partition 0's mark said it was busy at T0
    vip.routes.held.discard(0)  # and then its worker died: its reads wait for a rebalance
    vip.route(reads(["E2" + f"{29:06X}"], T0 + timeout + dt.timedelta(minutes=5)), source=1)  # far on, elsewhere
    vip.tick()
    assert visits == []  # partition 0 holds the clock back: its members' reads may be on their way

    vip.agents._forget_partitions({TopicPartition(topics.RFID_READS.name, 0)})  # the rebalance gives it to us
    vip.routes.held.add(0)
    vip.tick()
    assert visits == []  # taken over just now: not marked before its backlog could be read
    time.sleep(0.4)  # nothing came: idle, and the clock is the latest mark
    vip.tick()
    assert len(visits) == 29  # told the time, the 29 left: their visits are closed
    vip.tick()
    assert len(visits) == 29 and context.counters["vip_present"] == 1


def test_in_a_quiet_mall_the_timer_sends_the_marks_again_where_a_member_is_due_so_they_leave(
    settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(vip_agents, "IDLE_PARTITION_S", 0.2)
    quick = settings.vip.presence.model_copy(update={"absence_timeout_s": 1})
    context = StubContext(
        settings.model_copy(update={"vip": settings.vip.model_copy(update={"presence": quick})}), tmp_path / "lanes"
    )
    member = Member(member_id="V-1", tier="gold")
    vip = Presence(context, MasterData(by_id={"V-1": member}, by_epc={"E2000001": member}))
    partitions = vip.partitions
    vip.route(reads(["E2000001"], T0), source=0)
    visits = context.topic(topics.VIP_VISITS).sent

    vip.tick()
    time.sleep(0.3)
    assert vip.tick() == partitions * partitions  # every partition idle: a mark each to each, then none unchanged
    assert vip.tick() == 0 and visits == []
    time.sleep(1.2)  # the quiet mall's clock passes the member's absence timeout
    assert vip.tick() == partitions  # the marks again, to the member's partition only: told the time, it left
    assert len(visits) == 1
    assert vip.tick() == 0
