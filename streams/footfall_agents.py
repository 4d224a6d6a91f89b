"""Footfall and parking agents: counters, staff badges and tills become visitor roll-ups, occupancy and dwell; gates become car-park occupancy and stays.

    footfall.ticks --route--+
    rfid.reads (staff) -----+--> footfall.by_mall --footfall--> footfall.rollups, .areas, .days --sink--> ClickHouse
    pos.by_member (sales) --+     (+ clock marks)  (malls lane: footfall_states)
    parking.events --route--> parking.by_mall --parking--> parking.stays, parking.occupancy --sink--> ClickHouse
                                                (malls lane: parking_states)  alerts (car_park_full)
                                                                  loyalty.requests (a member's car left: settle it)

A mall's footfall state depends on all its counters, readers and tills, so their events
are re-keyed by mall onto one topic and one worker holds the state. The routers are steps
of the worker's routes lane (streams/lanes.py): each sends what it was given in one batch
as one message per mall. The footfall and parking agents are steps of the malls lane
(``<app_id>-malls``), whose stores hold each mall's state: a batch of messages costs one
state read and one write per mall, and its rows go out as one message per interval. The
core needs an event-time clock: each router also sends :class:`FootfallMark` records saying
how far its input partition has got, and the agent's clock is the least over the busy inputs
(see :class:`SourceClock`), so an input read faster than another does not make the other's
events late. A timer moves a quiet mall's clock on, so intervals close without ticks.

Checkpoints. The malls lane's checkpoint (streams/state/checkpoint.py) puts the batch's rows
and each changed state on the broker before it commits the batch's offsets. A crash before
that reads the batch again against the state before it, and the rows come again with the
same ids (derived from what they are), which the sinks store once. A crash after the states
reached their changelog but before the commit reads the batch again against the state after
it: the cores remember what they counted (the footfall core its dedup ranges, the parking core
the exits it saw), so nothing counts twice, and what closed then was sent already.

Rebalance. The decoded state and the event-time clock of each mall are kept in memory only
while this worker holds the mall's partition of the malls lane: a revocation drops them (the
store holds the state), and the next batch reads the state from the store again. The routers'
marks are dropped for the input partitions their lane lost.

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

import msgspec
from aiokafka import ConsumerRecord, TopicPartition
from faust.types import TP

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
)
from .core.parking_fees import at_exit
from .core.snapshots import footfall_from_bytes, footfall_to_bytes, parking_from_bytes, parking_to_bytes
from .paging import PagedTable, fitting
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
    from .context import AgentContext
    from .core.rules import RuleBook
    from .lanes import BatchLane, LaneStep
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
        return [
            moment
            for moment, heard, caught_up in self.progress.values()
            if not caught_up and at - heard <= SILENT_SOURCE_S
        ]

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


def _by_key(records: Sequence[ConsumerRecord]) -> dict[bytes, list[ConsumerRecord]]:
    """A batch's records per key (per mall), each key's in the order read."""
    by_key: dict[bytes, list[ConsumerRecord]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    return by_key


def _cause(event: FootfallTick | RfidRead | PosTransaction) -> str:
    """What a late row came from, the same at every redelivery of the event."""
    if isinstance(event, PosTransaction):
        return event.txn_id
    if isinstance(event, FootfallTick):
        return f"{event.counter_id}@{event.ts.timestamp():.0f}"
    return f"{event.epc}@{event.reader_id}@{event.ts.timestamp():.3f}"


class FootfallAgents:
    """The footfall and parking agents of one hub, with the malls' layouts compiled from the config."""

    def __init__(
        self,
        context: AgentContext,
        master: MasterData,
        lane: BatchLane,
        routes: BatchLane,
        rule_book: Callable[[], RuleBook],
    ) -> None:
        self.context = context
        self.master = master
        settings = context.settings
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
        #: per mall: its footfall and parking state, paged past one record's size (it grows with its counters,
        #: areas and the cars inside)
        stores = context.lanes_dir
        app_id = settings.worker.app_id
        self.footfall_store = lane.store(
            "footfall_states", topics.changelog_topic(app_id, "footfall_states"), stores, self.partitions
        )
        self.parking_store = lane.store(
            "parking_states", topics.changelog_topic(app_id, "parking_states"), stores, self.partitions
        )
        self.routes = routes
        #: the loyalty agent's rule book: its parking fee table prices the stays of cars no member owns
        self.rule_book = rule_book
        routes.step(topics.FOOTFALL_TICKS.name, self._router("footfall routing", self._tick_of))
        routes.step(topics.RFID_READS.name, self._router("footfall badge routing", self._badge_of))
        routes.step(topics.POS_BY_MEMBER.name, self._router("footfall sales routing", self._sale_of))
        routes.step(topics.PARKING_EVENTS.name, self._route_parking)
        routes.on_revoked(self._forget_sources)
        lane.step(topics.FOOTFALL_BY_MALL.name, self._footfall)
        lane.step(topics.PARKING_BY_MALL.name, self._parking)
        lane.on_revoked(self._forget_malls)
        context.timer(settings.worker.footfall_tick_seconds, "footfall_tick", self._tick)

    # -- routing onto footfall.by_mall ----------------------------------------------------

    def _router(self, stage: str, pick: Callable[[bytes], tuple[str | None, Record, float | None, bool]]) -> LaneStep:
        """A routes-lane step: what it is given goes on as one :class:`FootfallBatch` per mall, in reading order.

        ``pick`` says of one record its mall, the decoded record, its event time (None: it
        does not mark how far its input has got) and whether it matters to the mall's counts.
        """
        by_mall = self.context.topic(topics.FOOTFALL_BY_MALL)

        async def route(records: Sequence[ConsumerRecord]) -> None:
            batches: dict[str, list] = {}
            for consumed in records:
                async with self.context.dead_letter_on_failure(consumed, stage):
                    mall_id, record, moment, relevant = pick(consumed.value)
                    if mall_id is None or mall_id not in self.layouts:
                        self.context.counters["footfall_unknown_mall"] += 1
                        continue
                    items = batches.setdefault(mall_id, [])
                    if relevant:
                        items.append(record)
                    if moment is not None:
                        items += self._marks(consumed, mall_id, record, moment)
            for mall_id, items in batches.items():
                for value in fitting(items, FootfallBatch, self.context.payload_limit):
                    await by_mall.send(key=mall_id.encode(), value=value)
            self._align()

        return route

    def _align(self) -> None:
        """Hold back the clock inputs read more than ``ALIGN_AHEAD_S`` ahead of the slowest one still reading."""
        lane = self.routes
        reading = {
            tp: moment
            for tp, moment in self._event_time.items()
            if tp in lane.assignment() and self._read_to.get(tp, -1) + 1 < (lane.highwater(tp) or 0)
        }
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
        lane = self.routes
        assigned = [tp for tp in lane.assignment() if tp.topic in {spec.name for spec in CLOCK_SOURCES}]
        by_mall = self.context.topic(topics.FOOTFALL_BY_MALL)
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
        return self.context.malls.mall_of(tick), tick, tick.ts.timestamp(), True

    def _badge_of(self, value: bytes) -> tuple[str | None, Record, float | None, bool]:
        read = decode(RfidRead, value)
        mall_id = self.context.malls.mall_of(read)
        prefixes = self.staff_prefixes.get(mall_id or "")
        staff = not read.duplicate and bool(prefixes) and read.epc.upper().startswith(prefixes)
        return mall_id, read, read.ts.timestamp(), staff

    def _sale_of(self, value: bytes) -> tuple[str | None, Record, float | None, bool]:
        txn = decode(PosTransaction, value)
        # the footfall core counts a sale by its store and time: its lines and tenders would only fill the topic
        counted = msgspec.structs.replace(txn, lines=[], tenders=[])
        # tills come two hops later than counters: they never hold a mall's clock back (see CLOCK_SOURCES)
        return self.context.malls.mall_of(txn), counted, None, txn.kind != "return"

    # -- the footfall state of each mall ---------------------------------------------------

    def _footfall_table(self, partition: int) -> PagedTable:
        """The footfall states of a partition this worker holds: a mall's grows with its counters, areas and badges."""
        return PagedTable(self.footfall_store.partition(partition), self.context.payload_limit)

    def _state(self, mall_id: str, partition: int) -> FootfallState:
        state = self.states.get(mall_id)
        if state is None:
            stored = self._footfall_table(partition).get(mall_id.encode())
            state = self.states[mall_id] = footfall_from_bytes(stored) if stored else FootfallState()
        return state

    def _clock(self, mall_id: str) -> SourceClock:
        clock = self.clocks.get(mall_id)
        if clock is None:
            clock = self.clocks[mall_id] = SourceClock(self.sources, time.monotonic())
        return clock

    async def _footfall(self, records: Sequence[ConsumerRecord]) -> None:
        """A malls-lane step: each mall's messages of the batch in order, its state written once, its rows sent."""
        sent: list[Awaitable[object]] = []
        for key, mall_records in _by_key(records).items():
            mall_id = key.decode()
            layout = self.layouts.get(mall_id)
            if layout is None:
                continue
            partition = mall_records[0].partition
            state, clock = self._state(mall_id, partition), self._clock(mall_id)
            outputs: list[tuple[FootfallOutput, str]] = []
            for record in mall_records:
                async with self.context.dead_letter_on_failure(record, "footfall"):
                    message = decode(ByMall, record.value)  # type: ignore[arg-type]
                    state = self._apply(state, clock, message, layout, outputs)
            sent += await self._emit(outputs)
            self.states[mall_id] = state
            self._footfall_table(partition)[key] = footfall_to_bytes(state)
        # a failed send fails the step, so the batch is not committed (the lane's checkpoint flushes the rest)
        await asyncio.gather(*sent)

    def _apply(
        self,
        state: FootfallState,
        clock: SourceClock,
        message: ByMall,
        layout: FootfallLayout,
        outputs: list[tuple[FootfallOutput, str]],
    ) -> FootfallState:
        """One footfall.by_mall message through the core: the state it leaves, and what closed added to ``outputs``."""
        lag = layout.config.max_clock_lag_s
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
        self.context.counters["footfall_events"] += events
        return state

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
                self.context.counters["footfall_late_rows"] += 1
            batches.setdefault((type(output), output.start), []).append(output)
        for (kind, _), rows in batches.items():
            spec, wrap = (
                (topics.FOOTFALL_ROLLUPS, RollupBatch) if kind is RollupRow else (topics.FOOTFALL_AREAS, AreaBatch)
            )
            for value in fitting(rows, wrap, self.context.payload_limit):
                sent.append(await self.context.topic(spec).send(key=rows[0].mall_id.encode(), value=value))
        return sent

    async def _send(self, spec: topics.TopicSpec, mall_id: str, record: Record) -> Awaitable[object]:
        return await self.context.topic(spec).send(key=mall_id.encode(), value=encode(record))

    def _forget_malls(self, revoked: set[TopicPartition]) -> None:
        """Partitions of the malls lane moved: their malls' states and clocks are read afresh when they come back."""
        lost = {tp.partition for tp in revoked}
        for mall_id in [
            mall_id
            for mall_id in {*self.states, *self.clocks}
            if topics.partition_of(mall_id.encode(), self.partitions) in lost
        ]:
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
                await self.context.topic(topics.FOOTFALL_BY_MALL).send(key=mall_id.encode(), value=encode(mark))

    # -- parking ---------------------------------------------------------------------------

    async def _route_parking(self, records: Sequence[ConsumerRecord]) -> None:
        """A routes-lane step: gate events go on as one :class:`ParkingBatch` per mall, in reading order."""
        batches: dict[str, list[ParkingEvent]] = {}
        for consumed in records:
            async with self.context.dead_letter_on_failure(consumed, "parking routing"):
                gate_event = decode(ParkingEvent, consumed.value)
                mall_id = self.context.malls.mall_of(gate_event)
                if mall_id is None:
                    self.context.counters["parking_unknown_mall"] += 1
                    continue
                # the id travels with the event, so the occupancy row it causes has one id however often it comes;
                # taken once the mall is stamped, as the raw row's
                placed = msgspec.structs.replace(gate_event, mall_id=mall_id)
                batches.setdefault(mall_id, []).append(msgspec.structs.replace(placed, event_id=identity(placed)))
        by_mall = self.context.topic(topics.PARKING_BY_MALL)
        for mall_id, gate_events in batches.items():
            for value in fitting(gate_events, ParkingBatch, self.context.payload_limit):
                await by_mall.send(key=mall_id.encode(), value=value)

    async def _parking(self, records: Sequence[ConsumerRecord]) -> None:
        """A malls-lane step: each mall's gate events of the batch in order, its state written once, its rows sent."""
        sent: list[Awaitable[object]] = []
        for key, mall_records in _by_key(records).items():
            layout = self.parking_layouts.get(key.decode())
            if layout is None:
                continue
            table = PagedTable(self.parking_store.partition(mall_records[0].partition), self.context.payload_limit)
            stored = table.get(key)
            state = parking_from_bytes(stored) if stored else ParkingState()
            occupancy: list[ParkingOccupancy] = []
            for record in mall_records:
                async with self.context.dead_letter_on_failure(record, "parking"):
                    batch = decode(ParkingBatch, record.value)
                    for gate_event in batch.events:
                        state, outputs = apply_parking_event(state, gate_event, gate_event.ts, layout)
                        for output in outputs:
                            if isinstance(output, ParkingOccupancy):
                                occupancy.append(
                                    msgspec.structs.replace(output, cause=gate_event.event_id or identity(gate_event))
                                )
                            elif isinstance(output, ParkingStay):
                                sent += await self._exit(key, output)
                            elif isinstance(output, Alert):
                                self.context.counters["car_park_full_alerts"] += 1
                                sent.append(await self.context.topic(topics.ALERTS).send(key=key, value=encode(output)))
            for value in fitting(occupancy, OccupancyBatch, self.context.payload_limit):
                sent.append(await self.context.topic(topics.PARKING_OCCUPANCY).send(key=key, value=value))
            table[key] = parking_to_bytes(state)
        await asyncio.gather(*sent)

    async def _exit(self, key: bytes, stay: ParkingStay) -> list[Awaitable[object]]:
        """A finished stay: a member's car to the card's worker for settling, anyone else's priced here; the sends."""
        member_id = self.master.member_of_plate(stay.plate)
        stay, settlement = at_exit(stay, member_id, self.rule_book().parking, self.zones[stay.mall_id])
        sent = []
        if settlement is not None:
            sent.append(
                await self.context.topic(topics.LOYALTY_REQUESTS).send(
                    key=settlement.member_id.encode(), value=encode(settlement)
                )
            )
            self.context.counters["parking_settlements"] += 1
        sent.append(await self.context.topic(topics.PARKING_STAYS).send(key=key, value=encode(stay)))
        return sent
