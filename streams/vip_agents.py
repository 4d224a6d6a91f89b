"""VIP agents: RFID reads of members' cards become alerts for staff and visit rows.

    rfid.reads --route (master data)--> rfid.by_member --vip_track--> MQTT, alerts --vip_deliver--> webhook
              unknown tags: counted     ^           (vip_states)  vip.visits --sink--> ClickHouse
    pos.by_member --route (members)-----+   spend joins the visit     alerts.delivered --sink--> ClickHouse

Reads are re-keyed by member in the worker's routes lane (streams/lanes.py: a batch at a
time, so strangers' tags cost little) so one worker holds a member's presence; their
receipts join them there, so the same worker adds their spend. Leaving has no read of its
own: a timer sends a :class:`VipTick` through ``rfid.by_member`` for every member still
present, so the presence table is only ever written from its own stream.

Checkpoints and rebalance. Every input that changes a member's presence or visit writes the
state to ``vip_states`` (its changelog) in the same agent step, before faust acks the
message (it flushes the producer before committing), so no offset is committed past a change
not recorded. The alerts and visits a step decided are on the broker before its state is
written: a redelivered input finds them decided, and they would not be decided again. Nothing else is kept per partition but the routers' event-time clock of each
``rfid.reads`` partition, dropped when the routes lane loses that partition.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import faust
import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from mallstream.sinks.alerts import AlertPublisher

from . import topics
from .core.presence import next_change
from .core.vip import Step, VipPlaces, VipState, add_purchase, on_read, on_tick
from .master_data import MasterData
from .records import PosTransaction, RfidRead, VipTick, decode, encode

if TYPE_CHECKING:
    from .app import Hub

_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(VipState)
#: What travels on rfid.by_member.
ByMember = RfidRead | VipTick | PosTransaction

SIGNED_SPEND = {"sale": 1, "return": -1, "void": -1}
#: A partition without reads for this many seconds no longer holds the clock back.
IDLE_PARTITION_S = 10.0


class VipAgents:
    """The VIP agents of one hub, with the member master data and the places of the malls' readers."""

    def __init__(self, hub: Hub, master: MasterData) -> None:
        self.hub = hub
        self.master = master
        self.policy = hub.settings.vip
        self.places_of_reader = {
            reader.id: VipPlaces.of(mall) for mall in hub.settings.malls for reader in mall.rfid_readers
        }
        self.places_of_place = {
            reader.place: self.places_of_reader[reader.id]
            for mall in hub.settings.malls
            for reader in mall.rfid_readers
        }
        self.unknown_tags: Counter[str] = Counter()
        #: per partition of rfid.reads, the latest read time seen and when (monotonic): see :meth:`clock`
        self._seen: dict[int, tuple[float, float]] = {}
        partitions = hub.settings.kafka.partitions
        # the changelog is named after the main app id in a separate VIP worker too, so presence survives the move
        changelog = hub.app.topic(
            topics.changelog_topic(hub.settings.worker.app_id, "vip_states"),
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            compacting=True,
            acks=False,
            internal=True,
            maxsize=131_072,
            allow_empty=True,
        )
        self.states = hub.app.Table(
            "vip_states", partitions=partitions, key_type=bytes, value_type=bytes, changelog_topic=changelog
        )
        self.publisher = AlertPublisher(hub.settings.alerts, hub.settings.mqtt)
        app = hub.app
        hub.route_lane.step(topics.RFID_READS.name, self._route)
        hub.route_lane.step(topics.POS_BY_MEMBER.name, self._route_spend)
        hub.route_lane.on_revoked(self._forget_partitions)
        app.agent(hub.topic(topics.RFID_BY_MEMBER), name="vip_track")(self._track)
        app.agent(hub.topic(topics.ALERTS), name="vip_deliver")(self._deliver)
        app.timer(hub.settings.worker.vip_tick_seconds, name="vip_tick")(self._tick)

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

    def _state(self, key: bytes) -> VipState | None:
        stored = self.states.get(key)
        return _state_decoder.decode(stored) if stored else None

    async def _emit(self, key: bytes, state: VipState, step: Step) -> None:
        """The step's alerts and visits, then, once the broker has them, the state that no longer holds them."""
        sent = []
        for alert in step.alerts:
            self.hub.counters["vip_alerts"] += 1
            # on MQTT at once, so staff do not wait behind the alerts partition; the topic keeps the record
            published = self.publisher.publish(alert)
            sent.append(await self.hub.topic(topics.ALERTS).send(key=alert.mall_id.encode(), value=encode(published)))
        for visit in step.visits:
            sent.append(await self.hub.topic(topics.VIP_VISITS).send(key=key, value=encode(visit)))
        await asyncio.gather(*sent)
        self.states[key] = _state_encoder.encode(state)

    async def _route(self, records: Sequence[ConsumerRecord]) -> None:
        """A routes-lane step: reads of members' cards go on keyed by member; strangers' tags are only counted."""
        by_member = self.hub.topic(topics.RFID_BY_MEMBER)
        for consumed in records:
            async with self.hub.dead_letter_on_failure(consumed, "vip routing"):
                read = decode(RfidRead, consumed.value)
                member = self.master.member_of_tag(read.epc)
                if member is not None:
                    await by_member.send(key=member.member_id.encode(), value=consumed.value)
                elif not read.duplicate:  # unknown tags are counted, never alerted
                    self.unknown_tags[read.epc.upper()] += 1
                    self.hub.counters["unknown_tag_reads"] += 1
                self._saw(read, consumed.partition)

    async def _track(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            async with self.hub.dead_letter_on_failure(event, "vip tracking"):
                message = decode(ByMember, event.value)  # type: ignore[arg-type]
                key = event.key
                if isinstance(message, PosTransaction):
                    await self._emit(key, *self._spend(key, message))
                    continue
                if isinstance(message, VipTick):
                    state = self._state(key)
                    member = self.master.by_id.get(message.member_id)
                    if state is None or member is None or not state.presence.stops:
                        continue
                    places = self.places_of_place.get(state.presence.stops[-1].place)
                    if places is None:
                        continue
                    await self._emit(key, *on_tick(state, member, message.now, places, self.policy))
                    continue
                member = self.master.member_of_tag(message.epc)
                places = self.places_of_reader.get(message.reader_id)
                if member is None or places is None:
                    continue
                await self._emit(key, *on_read(self._state(key), message, member, self.clock(), places, self.policy))

    async def _route_spend(self, records: Sequence[ConsumerRecord]) -> None:
        """A routes-lane step: receipts of members in the master data join their reads on ``rfid.by_member``."""
        by_member = self.hub.topic(topics.RFID_BY_MEMBER)
        for consumed in records:
            async with self.hub.dead_letter_on_failure(consumed, "vip spend routing"):
                txn = decode(PosTransaction, consumed.value)
                if txn.member_id is not None and txn.member_id in self.master.by_id:
                    await by_member.send(key=consumed.key, value=consumed.value)

    def _spend(self, key: bytes, txn: PosTransaction) -> tuple[VipState, Step]:
        cents = SIGNED_SPEND[txn.kind] * int(txn.total * 100)
        return add_purchase(
            self._state(key),
            txn.member_id or "",
            cents,
            txn.ts,
            txn.txn_id,
            lead_s=self.policy.presence.absence_timeout_s,
        )

    async def _deliver(self, stream: faust.StreamT) -> None:
        delivered = self.hub.topic(topics.ALERTS_DELIVERED)
        async for event in stream.events():
            async with self.hub.dead_letter_on_failure(event, "alert delivery"):
                alert = decode(topics.ALERTS.record, event.value)
                if alert.published_at is None:  # VIP alerts were published where they were decided
                    alert = self.publisher.publish(alert)
                await delivered.send(key=alert.alert_id.encode(), value=encode(alert))
                if self.publisher.delivery.webhook_url:
                    await asyncio.to_thread(self.publisher.post_webhook, alert)

    async def _tick(self) -> None:
        """Tell members whose presence is due to change (a move settles, or they left) the time.

        The answer is decided in the member's own partition, where its state is written.
        """
        by_member = self.hub.topic(topics.RFID_BY_MEMBER)
        now = self.clock()
        present = 0
        for key, stored in list(self.states.items()):
            state = _state_decoder.decode(stored)
            present += bool(state.presence.stops)
            places = state.presence.stops and self.places_of_place.get(state.presence.stops[-1].place)
            if places and next_change(state.presence, places.entrances, self.policy.presence) <= now.timestamp():
                await by_member.send(key=key, value=encode(VipTick(member_id=state.member_id, now=now)))
        self.hub.counters["vip_present"] = present
