"""VIP agents: RFID reads of members' cards become alerts for staff and visit rows.

    rfid.reads --route (master data)--> rfid.by_member --track--> MQTT, alerts --vip_deliver--> webhook
              unknown tags: counted     ^     (presence lane: vip_states)  vip.visits --sink--> ClickHouse
    pos.by_member --route (members)-----+   spend joins the visit     alerts.delivered --sink--> ClickHouse

Reads are re-keyed by member in the worker's routes lane (streams/lanes.py: a batch at a
time, so strangers' tags cost little) so one worker holds a member's presence; their
receipts join them there, so the same worker adds their spend.

Leaving has no read of its own, so presence needs a clock, and in a replay or with several
workers that clock must not run past reads still on their way. Each worker's timer sends a
:class:`VipMark` per ``rfid.reads`` partition it routes (how far its reads have gone on) to
every ``rfid.by_member`` partition, after the reads it covers; a presence partition's clock is
the least mark of the partitions not idle (all idle: the latest, running on in wall time). A
worker that dies stops marking its partitions, so nobody there is taken for gone until another
worker routes their reads on. (On the clock of the partitions it held itself, a surviving
worker split visits.) When marks come, the presence step tells the members due by that clock
the time (the core's ``on_tick``: a move settles, or they left), in its own stream, so the store
is only written there. Who is due when is kept in memory (:class:`~.core.due.DueIndex`, built
from the store once per partition held and moved by every state written): the work is the
members due, not every member ever seen. In a quiet mall no mark changes; where a member is
due, the timer sends the marks to that partition again.

Checkpoints and rebalance. The presence core runs in the presence lane (``<app_id>-presence``,
streams/lanes.py), whose store ``vip_states`` holds each member's presence and visit: a batch
costs one state read and one write per member. An arrival is published on MQTT as soon as it is
decided; the lane's checkpoint then puts the batch's alerts, visits and states on the broker
before it commits the batch's offsets, so no offset is committed past a change not recorded,
and a batch read again after a crash meets either the state before it (and decides the same
alerts, with the same ids) or the state after it (and decides nothing again). Beside the store,
each presence partition keeps its marks and due index, dropped when the presence lane loses it,
and the routers each ``rfid.reads`` partition's clock, dropped when the routes lane loses it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

import faust
import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from mallstream.sinks.alerts import AlertPublisher

from . import topics
from .core.due import DueIndex
from .core.presence import next_change
from .core.vip import Step, VipPlaces, VipState, add_purchase, on_read, on_tick
from .master_data import MasterData
from .records import PosTransaction, PresenceInput, RfidRead, VipMark, VipTick, decode, encode

if TYPE_CHECKING:
    from .context import AgentContext
    from .lanes import BatchLane

_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(VipState)

#: A partition without reads for this many seconds no longer holds the clock back.
IDLE_PARTITION_S = 10.0
#: An rfid.reads partition's mark is sent again this often (s) when it has not changed.
MARK_AGAIN_S = 60.0


class VipAgents:
    """The VIP agents of one hub, with the member master data and the places of the malls' readers."""

    def __init__(self, context: AgentContext, master: MasterData, lane: BatchLane, routes: BatchLane) -> None:
        self.context = context
        self.master = master
        self.policy = context.settings.vip
        self.places_of_reader = {
            reader.id: VipPlaces.of(mall) for mall in context.settings.malls for reader in mall.rfid_readers
        }
        self.places_of_place = {
            reader.place: self.places_of_reader[reader.id]
            for mall in context.settings.malls
            for reader in mall.rfid_readers
        }
        self.unknown_tags: Counter[str] = Counter()
        #: per partition of the presence lane: members by the moment (s) their presence is next due to change
        self._due: DueIndex[int] = DueIndex()
        self._indexed: set[int] = set()
        #: per partition of rfid.reads, the latest read time seen and when (monotonic): see :meth:`clock`
        self._seen: dict[int, tuple[float, float]] = {}
        #: per partition of rfid.reads the routes lane holds: since when (monotonic)
        self._routing_since: dict[int, float] = {}
        #: per rfid.reads partition routed here: what its last mark said (latest read time, idle) and when
        #: (monotonic) it is sent again unchanged
        self._marked: dict[int, tuple[float, bool, float]] = {}
        #: per presence partition: per rfid.reads partition, its latest mark (event time, idle, when it came)
        self._marks: dict[int, dict[int, tuple[float, bool, float]]] = {}
        self.routes = routes
        self.lane = lane
        self.partitions = partitions = context.settings.kafka.partitions
        # the changelog is named after the main app id in a separate VIP worker too, so presence survives the move
        self.states = lane.store(
            "vip_states",
            topics.changelog_topic(context.settings.worker.app_id, "vip_states"),
            context.lanes_dir,
            partitions,
        )
        self.publisher = AlertPublisher(context.settings.alerts, context.settings.mqtt)
        routes.step(topics.RFID_READS.name, self._route)
        routes.step(topics.POS_BY_MEMBER.name, self._route_spend)
        routes.on_revoked(self._forget_partitions)
        lane.step(topics.RFID_BY_MEMBER.name, self._track)
        lane.on_revoked(self._forget_presence)
        context.agent(topics.ALERTS, "vip_deliver", self._deliver)
        context.timer(context.settings.worker.vip_tick_seconds, "vip_tick", self._tick)

    def clock(self) -> dt.datetime:
        """Event time, running on: per input partition the latest read time plus the time passed since.

        Live, this is the wall clock; in a replay it follows the day being replayed, so
        leaving and quiet hours are decided as they were on that day. It is the least over
        the partitions still receiving reads, so members whose reads lag in one partition
        are not taken for gone; once all are idle, the latest.
        """
        if not self._seen:
            return dt.datetime.now(dt.UTC)
        now = time.monotonic()
        running = [(seen + now - at, now - at <= IDLE_PARTITION_S) for seen, at in self._seen.values()]
        active = [moment for moment, busy in running if busy]
        return dt.datetime.fromtimestamp(min(active) if active else max(moment for moment, _ in running), dt.UTC)

    def _saw(self, read: RfidRead, partition: int) -> None:
        moment, now = read.ts.timestamp(), time.monotonic()
        seen = self._seen.get(partition)
        if seen is None or moment > seen[0] + now - seen[1]:
            self._seen[partition] = (moment, now)

    def _forget_partitions(self, revoked: set[TopicPartition]) -> None:
        """The routes lane lost these partitions: their clocks no longer hold ours back, nor run it on."""
        for tp in revoked:
            if tp.topic == topics.RFID_READS.name:
                self._seen.pop(tp.partition, None)
                self._routing_since.pop(tp.partition, None)
                self._marked.pop(tp.partition, None)

    def _state(self, key: bytes, partition: int) -> VipState | None:
        stored = self.states.partition(partition).get(key)
        return _state_decoder.decode(stored) if stored else None

    async def _emit(self, key: bytes, step: Step) -> list[Awaitable[object]]:
        """The step's alerts (on MQTT at once) and visits; returns the sends, each done once the broker has it."""
        sent = []
        for alert in step.alerts:
            self.context.counters["vip_alerts"] += 1
            # on MQTT at once, so staff do not wait behind the alerts partition; the topic keeps the record
            published = self.publisher.publish(alert)
            sent.append(
                await self.context.topic(topics.ALERTS).send(key=alert.mall_id.encode(), value=encode(published))
            )
        for visit in step.visits:
            sent.append(await self.context.topic(topics.VIP_VISITS).send(key=key, value=encode(visit)))
        return sent

    async def _route(self, records: Sequence[ConsumerRecord]) -> None:
        """A routes-lane step: reads of members' cards go on keyed by member; strangers' tags are only counted."""
        by_member = self.context.topic(topics.RFID_BY_MEMBER)
        for consumed in records:
            async with self.context.dead_letter_on_failure(consumed, "vip routing"):
                read = decode(RfidRead, consumed.value)
                member = self.master.member_of_tag(read.epc)
                if member is not None:
                    await by_member.send(key=member.member_id.encode(), value=consumed.value)
                elif not read.duplicate:  # unknown tags are counted, never alerted
                    self.unknown_tags[read.epc.upper()] += 1
                    self.context.counters["unknown_tag_reads"] += 1
                self._saw(read, consumed.partition)

    async def _track(self, records: Sequence[ConsumerRecord]) -> None:
        """A presence-lane step: each member's reads, receipts and marks through the core in order, then the
        members due by their partition's clock told the time; a state written once per member and batch."""
        states: dict[bytes, tuple[int, VipState | None]] = {}
        changed: set[bytes] = set()
        sent: list[Awaitable[object]] = []
        marked: set[int] = set()

        async def apply(key: bytes, partition: int, message: PresenceInput) -> None:
            if key not in states:
                states[key] = (partition, self._state(key, partition))
            decided = self._decide(states[key][1], message)
            if decided is not None:
                state, step = decided
                states[key] = (partition, state)
                changed.add(key)
                sent.extend(await self._emit(key, step))

        for record in records:
            async with self.context.dead_letter_on_failure(record, "vip tracking"):
                message = decode(PresenceInput, record.value)  # type: ignore[arg-type]
                if isinstance(message, VipMark):
                    marks = self._marks.setdefault(record.partition, {})
                    marks[message.source_partition] = (message.now_s, message.idle, time.monotonic())
                    marked.add(record.partition)
                else:
                    await apply(record.key, record.partition, message)
        for partition in sorted(marked):
            now = self._presence_clock(partition)
            if now is not None:
                self._index(partition)
                for _, key in self._due.pop_due(partition, now.timestamp()):
                    await apply(key, partition, VipTick(member_id=key.decode(), now=now))
        # a failed send fails the step, so the batch is not committed (the lane's checkpoint flushes the rest)
        await asyncio.gather(*sent)
        for key in changed:
            partition, state = states[key]
            self.states.partition(partition)[key] = _state_encoder.encode(state)
            if partition in self._indexed:
                self._due.put(partition, key, self._next_change(state))

    def _index(self, partition: int) -> None:
        """Every member of the presence partition by when their presence is next due to change, once held."""
        if partition not in self._indexed:
            for key, stored in self.states.partition(partition).items():
                self._due.put(partition, key, self._next_change(_state_decoder.decode(stored)))
            self._indexed.add(partition)

    def _decide(self, state: VipState | None, message: PresenceInput) -> tuple[VipState, Step] | None:
        """One input of a member through the presence core: the new state and what it decided (None: nothing)."""
        if isinstance(message, PosTransaction):
            return self._spend(state, message)
        if isinstance(message, VipTick):
            member = self.master.by_id.get(message.member_id)
            if state is None or member is None or not state.presence.stops:
                return None
            places = self.places_of_place.get(state.presence.stops[-1].place)
            return on_tick(state, member, message.now, places, self.policy) if places is not None else None
        member = self.master.member_of_tag(message.epc)
        places = self.places_of_reader.get(message.reader_id)
        if member is None or places is None:
            return None
        return on_read(state, message, member, self.clock(), places, self.policy)

    async def _route_spend(self, records: Sequence[ConsumerRecord]) -> None:
        """A routes-lane step: receipts of members in the master data join their reads on ``rfid.by_member``."""
        by_member = self.context.topic(topics.RFID_BY_MEMBER)
        for consumed in records:
            async with self.context.dead_letter_on_failure(consumed, "vip spend routing"):
                txn = decode(PosTransaction, consumed.value)
                if txn.member_id is not None and txn.member_id in self.master.by_id:
                    await by_member.send(key=consumed.key, value=consumed.value)

    def _spend(self, state: VipState | None, txn: PosTransaction) -> tuple[VipState, Step]:
        cents = txn.sign * int(txn.total * 100)
        return add_purchase(
            state,
            txn.member_id or "",
            cents,
            txn.ts,
            txn.txn_id,
            lead_s=self.policy.presence.absence_timeout_s,
        )

    async def _deliver(self, stream: faust.StreamT) -> None:
        delivered = self.context.topic(topics.ALERTS_DELIVERED)
        async for event in stream.events():
            async with self.context.dead_letter_on_failure(event, "alert delivery"):
                alert = decode(topics.ALERTS.record, event.value)
                if alert.published_at is None:  # VIP alerts were published where they were decided
                    alert = self.publisher.publish(alert)
                await delivered.send(key=alert.alert_id.encode(), value=encode(alert))
                if self.publisher.delivery.webhook_url:
                    await asyncio.to_thread(self.publisher.post_webhook, alert)

    async def _tick(self) -> None:
        """Mark how far the reads of each ``rfid.reads`` partition held have been routed on.

        Where a presence partition held here has a member due by its clock while no mark changed,
        the marks are sent to it again, so that a quiet mall's leavers are told the time too.
        """
        await self._send_marks()
        by_member = self.context.topic(topics.RFID_BY_MEMBER)
        for partition, _ in self.states.held():
            self._index(partition)
        for partition in sorted(self.lane.held & self._indexed):
            now, due = self._presence_clock(partition), self._due.next_due(partition)
            if now is not None and due is not None and due <= now.timestamp():
                monotonic = time.monotonic()
                for mark in filter(None, (self._mark(source, monotonic) for source in sorted(self.routes.held))):
                    await by_member.send(value=encode(mark), partition=partition)
        self.context.counters["vip_present"] = len(self._due)

    async def _send_marks(self) -> None:
        """A :class:`VipMark` per ``rfid.reads`` partition the routes lane holds, to every presence partition,
        when it read more or went idle since its last mark, and every ``MARK_AGAIN_S`` in any case (a
        presence partition that moved finds every mark again within that)."""
        by_member = self.context.topic(topics.RFID_BY_MEMBER)
        monotonic = time.monotonic()
        for source in sorted(self.routes.held):
            mark = self._mark(source, monotonic)
            marked = self._marked.get(source)
            if mark is None or (marked and marked[:2] == (mark.read_s, mark.idle) and monotonic < marked[2]):
                continue
            self._marked[source] = (mark.read_s, mark.idle, monotonic + MARK_AGAIN_S)
            for partition in range(self.partitions):
                await by_member.send(value=encode(mark), partition=partition)

    def _mark(self, source: int, monotonic: float) -> VipMark | None:
        """How far a routed ``rfid.reads`` partition has got, or None while that is not known yet.

        One held for a while without a read is idle. One just taken over is not marked until its
        reads come, or it has stayed quiet that long: its backlog may not have been read yet.
        """
        since = self._routing_since.setdefault(source, monotonic)
        moment, at = self._seen.get(source, (0.0, since))
        idle = monotonic - at > IDLE_PARTITION_S
        if source not in self._seen and not idle:
            return None
        return VipMark(source_partition=source, now_s=moment + monotonic - at, idle=idle, read_s=moment)

    def _presence_clock(self, partition: int) -> dt.datetime | None:
        """The least mark of the ``rfid.reads`` partitions not idle; all idle: the latest, running on in wall
        time since it came. None until every partition was marked."""
        marks = self._marks.get(partition, {})
        if len(marks) < self.partitions:
            return None
        busy = [moment for moment, idle, _ in marks.values() if not idle]
        if busy:
            return dt.datetime.fromtimestamp(min(busy), dt.UTC)
        now = time.monotonic()
        return dt.datetime.fromtimestamp(max(moment + now - came for moment, _, came in marks.values()), dt.UTC)

    def _next_change(self, state: VipState) -> float | None:
        """When the member's presence is next due to change; None: not present."""
        places = state.presence.stops and self.places_of_place.get(state.presence.stops[-1].place)
        if not places:
            return None
        moment = next_change(state.presence, places.entrances, self.policy.presence)
        return None if math.isinf(moment) else moment

    def _forget_presence(self, revoked: set[TopicPartition]) -> None:
        """The presence lane lost these partitions: whoever holds them now indexes them from their store."""
        lost = {tp.partition for tp in revoked}
        self._due.drop(lost)
        self._indexed -= lost
        for partition in lost:
            self._marks.pop(partition, None)
