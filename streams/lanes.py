"""A batch lane: stateless steps that read their topics a batch at a time, outside faust's per-message path.

faust spends some 300 µs of CPU per message and agent on its stream machinery
(acks, sensors, buffers, one task switch per message); a step that keeps no state
(a ClickHouse sink) gains nothing from that. A lane is one aiokafka consumer in a
consumer group of its own: it gathers records until it holds ``max_records`` or the
oldest has waited ``max_wait_s``, hands each topic's records to its steps, and commits
the offsets only after every step returned and what they sent was flushed. So, as in
Quix Streams, a sink has stored its rows before the offsets that fed them are committed:
at-least-once, and the steps are idempotent (the sink drops keys it holds already). Like
the worker's own consumer, a lane pauses after an empty fetch, and a lane that gathers anyway (the sinks) after every fetch,
on a broker that answers fetches at once (streams/framework_patches.py); the flush fails after ``kafka.flush_timeout_s``.

A lane may keep state (:meth:`BatchLane.store`): a store per partition, with a changelog
topic, restored on assignment before the partition is read and dropped on revocation, and
committed by streams/state/checkpoint.py (state, changelog, flush, local files, offsets).
A stateful lane assigns partitions by range, so a partition number of every topic it reads
(all partitioned alike) is held by one worker with its stores; a rebalance waits for the batch
being handled to be checkpointed before the partitions go.

A step that raises stops the worker loudly (faust's own crash path), after nothing of
the batch was committed: the records come again on the restart. A step cut short because
the worker is stopping anyway ends the lane quietly, with the same result.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from mallstream.settings import Kafka, Worker
from mallstream.transports import kafka_options

from .state.changelog import restore
from .state.checkpoint import Checkpoint
from .state.owners import OwnersAssignor
from .state.store import LaneStore

log = logging.getLogger(__name__)

#: What a step is given: one topic's records of the batch, in offset order per partition.
LaneStep = Callable[[Sequence[ConsumerRecord]], Awaitable[None]]
#: Told which of the lane's partitions a rebalance took away, before any record of their new assignment is read.
RevokeHandler = Callable[[set[TopicPartition]], None]


def _produced_at(record: ConsumerRecord) -> int:
    return record.timestamp


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, lane: BatchLane) -> None:
        self.lane = lane

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.lane.partitions_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.lane.partitions_assigned(set(assigned))


class BatchLane:
    """One consumer group reading ``topics`` in batches for the steps registered on them."""

    def __init__(
        self,
        app: faust.App,
        kafka: Kafka,
        worker: Worker,
        group: str,
        max_records: int,
        max_wait_s: float,
        gather_ms: int = 0,
        aligned: bool = False,
    ) -> None:
        self.app = app
        self.kafka = kafka
        self.worker = worker
        self.group = group
        self.max_records = max_records
        self.max_wait_s = max_wait_s
        #: how long the broker may hold a fetch to gather records (0: answer at once); for lanes that batch anyway
        self.gather_ms = gather_ms
        #: hand on no record produced after the newest of the slowest partition still reading (see :meth:`_aligned`)
        self.aligned = aligned
        #: per partition, when the last record handed on was produced (aligned lanes)
        self._produced_to: dict[TopicPartition, int] = {}
        #: per partition cut short, when its next record was produced
        self._next_at: dict[TopicPartition, int] = {}
        self.steps: dict[str, list[LaneStep]] = defaultdict(list)
        self.revoke_handlers: list[RevokeHandler] = []
        self.stores: dict[str, LaneStore] = {}
        self.checkpoint = Checkpoint(app, group, [])
        #: partition numbers held with their stores (stateful lanes)
        self.held: set[int] = set()
        #: held while a batch is handled and checkpointed: a rebalance waits for it
        self._busy = asyncio.Lock()
        #: with stores: range assignment, and who holds which partition (the worker's web address)
        self.owners = OwnersAssignor(str(app.conf.canonical_url))
        #: batches and records handled so far (the worker's /stats/ shows them)
        self.batches = 0
        self.records = 0
        self._consumer: AIOKafkaConsumer | None = None

    def step(self, topic: str, handle: LaneStep) -> None:
        """Give ``handle`` every record of ``topic``; steps of one topic run in the order registered."""
        self.steps[topic].append(handle)

    def on_revoked(self, handle: RevokeHandler) -> None:
        """Call ``handle`` with the partitions a rebalance takes from this lane: steps drop what they kept of them."""
        self.revoke_handlers.append(handle)

    def store(self, name: str, changelog: str, directory: Path, partition_count: int) -> LaneStore:
        """A store the lane's steps keep per partition, written to ``changelog`` at every checkpoint."""
        store = self.stores[name] = LaneStore(name, changelog, directory / self.group, partition_count)
        self.checkpoint.stores = list(self.stores.values())
        return store

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in hand to be checkpointed, then let go of the revoked partitions and their state."""
        async with self._busy:
            for handle in self.revoke_handlers:
                handle(revoked)
            for tp in revoked:
                self._produced_to.pop(tp, None)
                self._next_at.pop(tp, None)
            for partition in {tp.partition for tp in revoked}:
                for store in self.stores.values():
                    store.drop(partition)
                self.held.discard(partition)

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restore the stores of newly held partitions from their local files and changelogs, before any read."""
        async with self._busy:
            new = {tp.partition for tp in assigned} - self.held
            if not self.stores or not new:
                self.held |= new
                return
            started = time.monotonic()
            try:
                applied = await self._restore(new)
            except Exception as exc:  # reading on without the state would be wrong: the worker stops, loudly
                log.exception("lane %s: restoring partitions %s failed", self.group, sorted(new))
                await self.app.crash(exc)
                raise
            self.held |= new
        log.info(
            "lane %s: partitions %s restored (%d changelog records) in %.1f s",
            self.group,
            sorted(new),
            applied,
            time.monotonic() - started,
        )

    async def _restore(self, partitions: set[int]) -> int:
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            client_id=f"{self.group}-restore",
            enable_auto_commit=False,
            **kafka_options(self.kafka),
        )
        await reader.start()
        try:
            opened = [
                (TopicPartition(store.changelog, partition), store.opened(partition))
                for store in self.stores.values()
                for partition in sorted(partitions)
            ]
            return await restore(reader, opened)
        finally:
            await reader.stop()

    def owner_of(self, partition: int) -> str | None:
        """The web address of the worker holding ``partition`` (with its stores), as of the last rebalance."""
        return self.owners.owners.get(partition)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this worker's lane reads now."""
        return self._consumer.assignment() if self._consumer is not None else set()

    def highwater(self, tp: TopicPartition) -> int | None:
        """The end of ``tp`` as the last fetch saw it (None before the first)."""
        return self._consumer.highwater(tp) if self._consumer is not None else None

    def hold_back(self, ahead: set[TopicPartition]) -> None:
        """Read no more of the ``ahead`` partitions until called without them; every other one is read again."""
        consumer = self._consumer
        if consumer is None:
            return
        consumer.resume(*(consumer.paused() - ahead))
        consumer.pause(*(tp for tp in consumer.assignment() if tp in ahead))

    def install(self) -> None:
        """Run the lane as a task of the faust app, from when the worker starts until it stops."""
        self.app.task(self.run)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            group_id=self.group,
            client_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # as the worker's own group: a restarted worker takes its partitions back without waiting for a rebalance
            group_instance_id=f"{self.worker.group_instance_id}-{self.group}",
            session_timeout_ms=int(self.worker.session_timeout * 1000),
            rebalance_timeout_ms=int(self.worker.session_timeout * 1000),
            heartbeat_interval_ms=int(self.worker.session_timeout * 100),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # stores hold a partition number of every topic read: those must go to one worker together
            partition_assignment_strategy=(self.owners if self.stores else RoundRobinPartitionAssignor,),
            **({"fetch_min_bytes": 1024 * 1024, "fetch_max_wait_ms": self.gather_ms} if self.gather_ms else {}),
            **kafka_options(self.kafka),
        )
        if self.steps:
            consumer.subscribe(list(self.steps), listener=_Rebalance(self))
        await consumer.start()
        self._consumer = consumer
        try:
            while True:
                batch = await self._gather(consumer)
                if not batch:
                    continue
                async with self._busy:
                    batch = await self._ready(consumer, batch)
                    try:
                        await self._handle(batch)
                    except Exception as exc:
                        if self.app.should_stop:
                            # the worker is stopping (its producer may be gone already): the batch comes again
                            log.info("lane %s: stopped with the worker; its last batch is not committed", self.group)
                            return
                        log.exception("lane %s: a step failed; nothing of the batch is committed", self.group)
                        await self.app.crash(exc)
                        return
                    # what the steps sent and the stores' changes are on the broker before the offsets move on
                    await self.checkpoint.commit(
                        consumer, {tp: records[-1].offset + 1 for tp, records in batch.items()}
                    )
        finally:
            self._consumer = None
            for store in self.stores.values():
                for partition in list(store.partitions):
                    store.drop(partition)
            self.held.clear()
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _ready(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The records the lane may handle now.

        Records of partitions a rebalance took meanwhile are their new owner's to handle. The
        fetcher may read a newly assigned partition before its stores are restored: its records
        are read again once they are.
        """
        assigned = consumer.assignment()
        ready = {}
        for tp, records in batch.items():
            if tp not in assigned:
                continue
            if self.stores and tp.partition not in self.held:
                consumer.seek(tp, records[0].offset)
                continue
            ready[tp] = records
        return await self._aligned(consumer, ready) if self.aligned else ready

    async def _aligned(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The batch cut where the slowest partition still reading has got to, by the time records were produced.

        A fetch brings whole runs of one partition: a backlog read as it comes would hand on one
        partition's next month before another's next day, and a step keeping event time per key
        downstream (the customer agent's day ends) would meet the day late. Records past the cut
        are read again later; partitions ahead are held back meanwhile, so the fetches bring the
        slow ones. A partition read to its end holds nothing back.
        """
        marks = []
        for tp in consumer.assignment():
            records = batch.get(tp)
            position = records[-1].offset + 1 if records else await consumer.position(tp)
            end = consumer.highwater(tp)
            if end is not None and position >= end:
                continue
            # an absent partition may still bring records from where it was cut, or at least from its last handed on
            marks.append(records[-1].timestamp if records else self._next_at.get(tp, self._produced_to.get(tp, -1)))
        if not marks:
            self.hold_back(set())
            return batch
        cut = min(marks)
        aligned, ahead = {}, set()
        for tp, records in batch.items():
            kept = records if records[-1].timestamp <= cut else [r for r in records if r.timestamp <= cut]
            if len(kept) < len(records):
                consumer.seek(tp, records[len(kept)].offset)
                self._next_at[tp] = records[len(kept)].timestamp
                ahead.add(tp)
            else:
                self._next_at.pop(tp, None)
            if kept:
                aligned[tp] = kept
                self._produced_to[tp] = kept[-1].timestamp
        self.hold_back(ahead)
        return aligned

    async def _gather(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records until ``max_records`` are held or the first has waited ``max_wait_s`` (empty after a quiet second)."""
        batch: dict[TopicPartition, list[ConsumerRecord]] = defaultdict(list)
        got = await consumer.getmany(timeout_ms=1000, max_records=self.max_records)
        held = 0
        first_at = time.monotonic()
        while got:
            for tp, records in got.items():
                batch[tp] += records
                held += len(records)
            left = self.max_wait_s - (time.monotonic() - first_at)
            if held >= self.max_records or left <= 0:
                break
            got = await consumer.getmany(timeout_ms=int(left * 1000), max_records=self.max_records - held)
        if self.aligned and batch:
            # what the fetcher holds already of the partitions the first take left out: the cut needs every one
            absent = [tp for tp in consumer.assignment() - consumer.paused() if tp not in batch]
            for tp, records in (await consumer.getmany(*absent, timeout_ms=0, max_records=self.max_records)).items():
                batch[tp] += records
        return batch

    async def _handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        by_topic: dict[str, list[list[ConsumerRecord]]] = defaultdict(list)
        for tp, records in batch.items():
            by_topic[tp.topic].append(records)
        for topic, partitions in by_topic.items():
            # an aligned lane hands them on interleaved by the time they were produced, as a stream of the topic
            # would deliver them (each partition's records stay in offset order); the others, partition by partition
            records = (
                list(heapq.merge(*partitions, key=_produced_at))
                if self.aligned
                else [record for records in partitions for record in records]
            )
            for handle in self.steps[topic]:
                await handle(records)
        self.batches += 1
        self.records += sum(len(records) for records in batch.values())
