"""Footfall and parking agents: counters, staff badges and tills become visitor roll-ups, occupancy and dwell; gates become car-park occupancy and stays.

    footfall.ticks --route--+
    rfid.reads (staff) -----+--> footfall.by_mall --footfall--> footfall.rollups, .areas, .days --sink--> ClickHouse
    pos.by_member (sales) --+     (+ clock marks)  (footfall_states)
    parking.events --route--> parking.by_mall --parking--> parking.stays, parking.occupancy --sink--> ClickHouse
                                                (parking_states)  alerts (car_park_full)
                                                                  loyalty.requests (a member's car left: settle it)

A mall's footfall state depends on all its counters, readers and tills, so their events
are re-keyed by mall onto one topic and one worker holds the state. The routers are steps
of the worker's routes lane (streams/lanes.py): each sends what it was given in one batch
as one message per mall (a message per event cost more in faust than the core spends on it); the parking agent writes its state and sends its occupancy
rows once per such message. The core needs an
event-time clock: each router also sends :class:`FootfallMark` records saying how far its
input partition has got, and the agent's clock is the least over the busy inputs (see
:class:`SourceClock`), so an input read faster than another does not make the other's
events late. A timer moves a quiet mall's clock on, so intervals close without ticks.

Checkpoints. A mall's state is written to its faust table (so to its changelog) in the same
agent step as the ``footfall.by_mall`` message that changed it. faust acks a message only when
the agent moves on to the next one, and flushes the producer before it commits acked offsets,
so the state reaches the broker before the offset past its message is committed: a crash
loses no event's effect on the state. The state may get there ahead of that commit (RocksDB
keeps it at once): the redelivered message then finds its events counted and is counted once
(the core remembers what it counted). What closed with it would not be emitted again, so the
rows a message caused are on the broker before its state is written (waited for only when
there are rows), and every row has an id derived from what it is, so the sinks store a row
sent twice once. One write per message, not per event: the routers send an input batch as one
message per mall. The parking agent writes its state the same way, once per message, after its
stays, occupancy rows and settlements are on the broker.

Rebalance. The decoded state and the event-time clock of each mall are kept in memory only
while this worker holds the mall's ``footfall.by_mall`` partition: a revocation drops them
(the table holds the state), and the next message reads the state from the table again. The
routers' marks are dropped for the input partitions their lane lost.

At an exit the parking agent prices the stay (:func:`~.core.parking_fees.at_exit`): a car
whose plate the member master data links to a member is settled on the member's card by
the loyalty agent (a :class:`~.records.ParkingSettlement` on ``loyalty.requests``, so
free parking by same-day spend, points or tier applies); any other car pays the rule
file's fee table, carried on the stay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import faust
import msgspec
from aiokafka import ConsumerRecord, TopicPartition
from faust.types import TP

from mallstream.failpoints import failpoint

from . import topics
from .core.footfall import AreaBatch, FootfallOutput, FootfallState, RollupBatch, RollupRow, advance, apply_event
from .core.footfall_layout import FootfallLayout
from .core.occupancy import AreaDay
from .core.parking import (
    OccupancyBatch,
    ParkingLayout,
    ParkingOccupancy,
    ParkingState,
    ParkingStay,
    apply_parking_event,
    forget_exits,
)
from .core.parking_fees import at_exit
from .paging import PagedTable, fitting
from .core.snapshots import footfall_from_bytes, footfall_to_bytes, parking_from_bytes, parking_to_bytes
from .records import (
    Alert,
    FootfallBatch,
    FootfallMark,
    FootfallTick,
    ParkingBatch,
    ParkingEvent,
    PosTransaction,
    Record,
    RfidRead,
    decode,
    encode,
    identity,
)

if TYPE_CHECKING:
    from .app import Hub
    from .lanes import Step
    from .master_data import MasterData

#: What travels on footfall.by_mall: the routers' batches, and the timer's marks.
ByMall = FootfallBatch | FootfallMark
#: An input partition whose router said nothing this long (wall clock) no longer holds a mall's clock back.
SILENT_SOURCE_S = 60.0
#: A router marks its progress each time its event time moves on by this much.
MARK_EVERY_S = 60.0
#: How far in event time an input partition may be read ahead of the slowest one still reading. In a backlog
#: the lane fetches megabytes of one partition at a time; a mall's clock waits for the slowest, so every open
#: interval the others reach meanwhile would be held in its state. Live, every input is caught up and none waits.
ALIGN_AHEAD_S = 3600.0
#: The inputs whose progress a mall's footfall clock waits for. Not the tills: they come two hops later, and a
#: sale after its interval closed is a late row adding to that interval's transactions, which never hold back
#: the visitor counts, occupancy or dwell.
CLOCK_SOURCES = (topics.FOOTFALL_TICKS, topics.RFID_READS)


class SourceClock:
    """One mall's event time: the least, over its input partitions still reading, of the newest event time each sent.

    A partition whose router has read all there is (it says so with a ``caught_up``
    mark) or that has said nothing for ``SILENT_SOURCE_S`` (its worker is gone) does not
    hold the clock back; one not heard from yet does. With every partition caught up,
    the clock runs on with the wall clock from the newest event time, as it would live.
    """

    def __init__(self, sources: Iterable[str], started: float) -> None:
        #: source -> (newest event time it sent, wall clock (monotonic) when it last spoke, whether caught up)
        self.progress = {source: (float("-inf"), started, False) for source in sources}

    def saw(self, mark: FootfallMark, at: float) -> None:
        newest, _, _ = self.progress.get(mark.source, (float("-inf"), at, False))
        self.progress[mark.source] = (max(newest, mark.ts.timestamp()), at, mark.caught_up)

    def _reading(self, at: float) -> list[float]:
        return [moment for moment, heard, caught_up in self.progress.values()
                if not caught_up and at - heard <= SILENT_SOURCE_S]

    def idle(self, at: float) -> bool:
        return not self._reading(at)

    def now(self, at: float) -> float:
        reading = self._reading(at)
        if reading:
            return min(reading)
        newest = max(moment for moment, _, _ in self.progress.values())
        quiet_since = max(heard for _, heard, _ in self.progress.values())
        return newest + at - quiet_since


def _utc(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, dt.UTC)


def _cause(event: FootfallTick | RfidRead | PosTransaction) -> str:
    """What a late row came from, the same at every redelivery of the event."""
    if isinstance(event, PosTransaction):
        return event.txn_id
    if isinstance(event, FootfallTick):
        return f"{event.counter_id}@{event.ts.timestamp():.0f}"
    return f"{event.epc}@{event.reader_id}@{event.ts.timestamp():.3f}"


class FootfallAgents:
    """The footfall and parking agents of one hub, with the malls' layouts compiled from the config."""

    def __init__(self, hub: Hub, master: MasterData) -> None:
        self.hub = hub
        self.master = master
        settings = hub.settings
        malls = settings.malls
        self.layouts = {mall.id: FootfallLayout.of(mall) for mall in malls}
        self.parking_layouts = {mall.id: ParkingLayout.of(mall) for mall in malls}
        self.zones = {mall.id: ZoneInfo(mall.timezone) for mall in malls}
        self.staff_prefixes = {mall.id: tuple(p.upper() for p in mall.footfall.staff_badge_prefixes) for mall in malls}
        self.partitions = settings.kafka.partitions
        self.sources = [f"{spec.name}:{p}" for spec in CLOCK_SOURCES for p in range(self.partitions)]
        #: what each router last marked, per (source, mall), and the offset it read to, per input partition
        self._marked: dict[tuple[str, str], float] = {}
        self._read_to: dict[TP, int] = {}
        #: the newest event time each clock input partition has given
        self._event_time: dict[TP, float] = {}
        #: per mall whose footfall.by_mall partition this worker holds: its state as in the table, and its clock
        self.states: dict[str, FootfallState] = {}
        self.clocks: dict[str, SourceClock] = {}
        raw = {"partitions": settings.kafka.partitions, "key_type": bytes, "value_type": bytes}
        #: a mall's state grows with its counters, areas and the cars inside: paged past one record's size
        self.footfall_table = PagedTable(hub.app.Table("footfall_states", **raw), hub.payload_limit)
        self.parking_table = PagedTable(hub.app.Table("parking_states", **raw), hub.payload_limit)
        app = hub.app
        lane = hub.route_lane
        lane.step(topics.FOOTFALL_TICKS.name, self._router("footfall routing", self._tick_of))
        lane.step(topics.RFID_READS.name, self._router("footfall badge routing", self._badge_of))
        lane.step(topics.POS_BY_MEMBER.name, self._router("footfall sales routing", self._sale_of))
        lane.step(topics.PARKING_EVENTS.name, self._route_parking)
        app.agent(hub.topic(topics.FOOTFALL_BY_MALL), name="footfall")(self._footfall)
        app.agent(hub.topic(topics.PARKING_BY_MALL), name="parking")(self._parking)
        app.timer(settings.worker.footfall_tick_seconds, name="footfall_tick")(self._tick)
        app.on_partitions_revoked.connect(self._forget_malls)
        lane.on_revoked(self._forget_sources)

    # -- routing onto footfall.by_mall ----------------------------------------------------

    def _router(self, stage: str, pick: Callable[[bytes], tuple[str | None, Record, float | None, bool]]) -> Step:
        """A routes-lane step: what it is given goes on as one :class:`FootfallBatch` per mall, in reading order.

        ``pick`` says of one record its mall, the decoded record, its event time (None: it
        does not mark how far its input has got) and whether it matters to the mall's counts.
        """
        by_mall = self.hub.topic(topics.FOOTFALL_BY_MALL)

        async def route(records: Sequence[ConsumerRecord]) -> None:
            batches: dict[str, list] = {}
            for consumed in records:
                async with self.hub.dead_letter_on_failure(consumed, stage):
                    mall_id, record, moment, relevant = pick(consumed.value)
                    if mall_id is None or mall_id not in self.layouts:
                        self.hub.counters["footfall_unknown_mall"] += 1
                        continue
                    items = batches.setdefault(mall_id, [])
                    if relevant:
                        items.append(record)
                    if moment is not None:
                        items += self._marks(consumed, mall_id, record, moment)
            for mall_id, items in batches.items():
                for value in fitting(items, FootfallBatch, self.hub.payload_limit):
                    await by_mall.send(key=mall_id.encode(), value=value)
            self._align()

        return route

    def _align(self) -> None:
        """Hold back the clock inputs read more than ``ALIGN_AHEAD_S`` ahead of the slowest one still reading."""
        lane = self.hub.route_lane
        reading = {tp: moment for tp, moment in self._event_time.items()
                   if tp in lane.assignment() and self._read_to.get(tp, -1) + 1 < (lane.highwater(tp) or 0)}
        slowest = min(reading.values(), default=float("inf"))
        lane.hold_back({tp for tp, moment in reading.items() if moment > slowest + ALIGN_AHEAD_S})

    def _marks(self, consumed: ConsumerRecord, mall_id: str, record: Record, moment: float) -> list[FootfallMark]:
        """Note how far this input partition has got; a mark for the mall once its time moved on enough."""
        source = f"{consumed.topic}:{consumed.partition}"
        tp = TP(consumed.topic, consumed.partition)
        self._read_to[tp] = consumed.offset
        self._event_time[tp] = max(self._event_time.get(tp, moment), moment)
        if moment < self._marked.get((source, mall_id), float("-inf")) + MARK_EVERY_S:
            return []
        self._marked[(source, mall_id)] = moment
        return [FootfallMark(mall_id=mall_id, ts=record.ts, source=source)]  # type: ignore[attr-defined]

    async def _mark_caught_up(self) -> None:
        """Tell every mall which of this worker's input partitions have nothing more to read."""
        lane = self.hub.route_lane
        assigned = [tp for tp in lane.assignment() if tp.topic in {spec.name for spec in CLOCK_SOURCES}]
        by_mall = self.hub.topic(topics.FOOTFALL_BY_MALL)
        for tp in assigned:
            end = lane.highwater(tp)
            if end is None or self._read_to.get(TP(tp.topic, tp.partition), -1) + 1 < end:
                continue
            source = f"{tp.topic}:{tp.partition}"
            for mall_id in self.layouts:
                # the next event read here marks its time again, whatever was marked before
                moment = self._marked.pop((source, mall_id), float("-inf"))
                mark = FootfallMark(mall_id=mall_id, ts=_utc(max(moment, 0.0)), source=source, caught_up=True)
                await by_mall.send(key=mall_id.encode(), value=encode(mark))

    def _tick_of(self, value: bytes) -> tuple[str | None, Record, float | None, bool]:
        tick = decode(FootfallTick, value)
        return self.hub.malls.mall_of(tick), tick, tick.ts.timestamp(), True

    def _badge_of(self, value: bytes) -> tuple[str | None, Record, float | None, bool]:
        read = decode(RfidRead, value)
        mall_id = self.hub.malls.mall_of(read)
        prefixes = self.staff_prefixes.get(mall_id or "")
        staff = not read.duplicate and bool(prefixes) and read.epc.upper().startswith(prefixes)
        return mall_id, read, read.ts.timestamp(), staff

    def _sale_of(self, value: bytes) -> tuple[str | None, Record, float | None, bool]:
        txn = decode(PosTransaction, value)
        # the footfall core counts a sale by its store and time: its lines and tenders would only fill the topic
        counted = msgspec.structs.replace(txn, lines=[], tenders=[])
        # tills come two hops later than counters: they never hold a mall's clock back (see CLOCK_SOURCES)
        return self.hub.malls.mall_of(txn), counted, None, txn.kind != "return"

    # -- the footfall state of each mall ---------------------------------------------------

    def _state(self, mall_id: str) -> FootfallState:
        state = self.states.get(mall_id)
        if state is None:
            stored = self.footfall_table.get(mall_id.encode())
            state = self.states[mall_id] = footfall_from_bytes(stored) if stored else FootfallState()
        return state

    def _clock(self, mall_id: str) -> SourceClock:
        clock = self.clocks.get(mall_id)
        if clock is None:
            clock = self.clocks[mall_id] = SourceClock(self.sources, time.monotonic())
        return clock

    async def _footfall(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            async with self.hub.dead_letter_on_failure(event, "footfall"):
                message = decode(ByMall, event.value)  # type: ignore[arg-type]
                mall_id = event.key.decode()
                layout = self.layouts.get(mall_id)
                if layout is None:
                    continue
                state, clock = self._state(mall_id), self._clock(mall_id)
                lag = layout.config.max_clock_lag_s
                outputs: list[tuple[FootfallOutput, str]] = []
                events = 0
                for item in message.items if isinstance(message, FootfallBatch) else [message]:
                    at = time.monotonic()
                    if isinstance(item, FootfallMark):
                        if item.source:
                            clock.saw(item, at)
                        moment = clock.now(at) if item.source else item.ts.timestamp()
                        outputs += [(output, "") for output in advance(state, moment, layout)]
                    else:
                        now = max(clock.now(at), item.ts.timestamp() - lag)
                        state, produced = apply_event(state, item, now, layout)
                        outputs += [(output, _cause(item)) for output in produced]
                        events += 1
                self.hub.counters["footfall_events"] += events
                # the rows on the broker before the state that no longer holds them: see the module docstring
                await asyncio.gather(*await self._emit(outputs))
                self.states[mall_id] = state
                self.footfall_table[event.key] = footfall_to_bytes(state)
                if events:
                    failpoint("footfall.after_state_write")

    async def _emit(self, outputs: list[tuple[FootfallOutput, str]]) -> list[Awaitable[object]]:
        """Per interval, its roll-up rows as one message and its area rows as another; a day closing, per area.

        One message per interval, not per row: a clock catching up closes many intervals at
        once. Not one per step either: a batch spanning hours would outgrow a Kafka message.
        A late row names its cause. Returns the sends, each done once the broker has the record.
        """
        sent = []
        batches: dict[tuple[type, dt.datetime], list] = {}
        for output, cause in outputs:
            if isinstance(output, AreaDay):
                sent.append(await self._send(topics.FOOTFALL_DAYS, output.mall_id, output))
                continue
            if isinstance(output, RollupRow) and output.late:
                output = msgspec.structs.replace(output, cause=cause)
                self.hub.counters["footfall_late_rows"] += 1
            batches.setdefault((type(output), output.start), []).append(output)
        for (kind, _), rows in batches.items():
            spec, wrap = (topics.FOOTFALL_ROLLUPS, RollupBatch) if kind is RollupRow else (topics.FOOTFALL_AREAS, AreaBatch)
            for value in fitting(rows, wrap, self.hub.payload_limit):
                sent.append(await self.hub.topic(spec).send(key=rows[0].mall_id.encode(), value=value))
        return sent

    async def _send(self, spec: topics.TopicSpec, mall_id: str, record: Record) -> Awaitable[object]:
        return await self.hub.topic(spec).send(key=mall_id.encode(), value=encode(record))

    async def _forget_malls(self, app: faust.App, revoked: set[TP], **_: object) -> None:
        """Partitions of footfall.by_mall moved: their malls' states and clocks are read afresh when they come back."""
        lost = {tp.partition for tp in revoked if tp.topic == topics.FOOTFALL_BY_MALL.name}
        for mall_id in [mall_id for mall_id in {*self.states, *self.clocks}
                        if topics.partition_of(mall_id.encode(), self.partitions) in lost]:
            self.states.pop(mall_id, None)
            self.clocks.pop(mall_id, None)

    def _forget_sources(self, revoked: set[TopicPartition]) -> None:
        """Input partitions the routes lane lost: their marks start again with the next read, wherever it is."""
        lost = {f"{tp.topic}:{tp.partition}" for tp in revoked}
        self._marked = {key: moment for key, moment in self._marked.items() if key[0] not in lost}
        for tp in revoked:
            self._read_to.pop(TP(tp.topic, tp.partition), None)
            self._event_time.pop(TP(tp.topic, tp.partition), None)

    async def _tick(self) -> None:
        """Say which inputs are caught up, and move each quiet mall's clock on through its own stream."""
        await self._mark_caught_up()
        at = time.monotonic()
        for mall_id, clock in list(self.clocks.items()):
            if clock.idle(at) and clock.now(at) > float("-inf"):
                mark = FootfallMark(mall_id=mall_id, ts=_utc(clock.now(at)))
                await self.hub.topic(topics.FOOTFALL_BY_MALL).send(key=mall_id.encode(), value=encode(mark))

    # -- parking ---------------------------------------------------------------------------

    async def _route_parking(self, records: Sequence[ConsumerRecord]) -> None:
        """A routes-lane step: gate events go on as one :class:`ParkingBatch` per mall, in reading order."""
        batches: dict[str, list[ParkingEvent]] = {}
        for consumed in records:
            async with self.hub.dead_letter_on_failure(consumed, "parking routing"):
                gate_event = decode(ParkingEvent, consumed.value)
                mall_id = self.hub.malls.mall_of(gate_event)
                if mall_id is None:
                    self.hub.counters["parking_unknown_mall"] += 1
                    continue
                # the id travels with the event, so the occupancy row it causes has one id however often it comes;
                # taken once the mall is stamped, as the raw row's
                placed = msgspec.structs.replace(gate_event, mall_id=mall_id)
                batches.setdefault(mall_id, []).append(msgspec.structs.replace(placed, event_id=identity(placed)))
        by_mall = self.hub.topic(topics.PARKING_BY_MALL)
        for mall_id, gate_events in batches.items():
            for value in fitting(gate_events, ParkingBatch, self.hub.payload_limit):
                await by_mall.send(key=mall_id.encode(), value=value)

    async def _parking(self, stream: faust.StreamT) -> None:
        """A batch of one mall's gate events: the state written once, the occupancy rows sent as one message."""
        async for event in stream.events():
            async with self.hub.dead_letter_on_failure(event, "parking"):
                batch = decode(ParkingBatch, event.value)
                layout = self.parking_layouts.get(event.key.decode())
                if layout is None:
                    continue
                stored = self.parking_table.get(event.key)
                state = parking_from_bytes(stored) if stored else ParkingState()
                occupancy: list[ParkingOccupancy] = []
                sent = []
                for gate_event in batch.events:
                    state, outputs = apply_parking_event(state, gate_event, gate_event.ts, layout)
                    forget_exits(state, gate_event.ts - dt.timedelta(seconds=layout.config.repeat_read_s))
                    for output in outputs:
                        if isinstance(output, ParkingOccupancy):
                            occupancy.append(msgspec.structs.replace(output, cause=gate_event.event_id or identity(gate_event)))
                        elif isinstance(output, ParkingStay):
                            sent += await self._exit(event.key, output)
                        elif isinstance(output, Alert):
                            self.hub.counters["car_park_full_alerts"] += 1
                            sent.append(await self.hub.topic(topics.ALERTS).send(key=event.key, value=encode(output)))
                for value in fitting(occupancy, OccupancyBatch, self.hub.payload_limit):
                    sent.append(await self.hub.topic(topics.PARKING_OCCUPANCY).send(key=event.key, value=value))
                # what the gate events caused is on the broker before the state that no longer would cause it
                await asyncio.gather(*sent)
                self.parking_table[event.key] = parking_to_bytes(state)

    async def _exit(self, key: bytes, stay: ParkingStay) -> list[Awaitable[object]]:
        """A finished stay: a member's car to the card's worker for settling, anyone else's priced here; the sends."""
        member_id = self.master.member_of_plate(stay.plate)
        stay, settlement = at_exit(stay, member_id, self.hub.loyalty.rule_book().parking, self.zones[stay.mall_id])
        sent = []
        if settlement is not None:
            sent.append(await self.hub.topic(topics.LOYALTY_REQUESTS).send(key=settlement.member_id.encode(),
                                                                           value=encode(settlement)))
            self.hub.counters["parking_settlements"] += 1
        sent.append(await self.hub.topic(topics.PARKING_STAYS).send(key=key, value=encode(stay)))
        return sent
