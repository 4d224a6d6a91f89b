"""Each agent built from a stub of the worker (tests/support/context.py), its lane steps driven without a broker.

The agents take a small context (streams/context.py), not the hub: these tests show it is
all they need, and pin what a batch does to the stores and the topics.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec
import pytest

from mallstream.settings import Mall, Settings, load
from mallstream.streams import topics
from mallstream.streams.core.rules import RuleFile
from mallstream.streams.customer_agents import CustomerAgents
from mallstream.streams.footfall_agents import FootfallAgents
from mallstream.streams.lanes import BatchLane
from mallstream.streams.loyalty_agents import LoyaltyAgent
from mallstream.streams.master_data import MasterData
from mallstream.streams.records import FootfallBatch, FootfallMark, FootfallTick, ParkingBatch, ParkingEvent, identity
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
