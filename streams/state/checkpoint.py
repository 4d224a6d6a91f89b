"""A lane's checkpoint, in the only order that loses nothing: state, changelog, flush, local files, offsets.

1. The steps have written the batch's state into the stores (memory) and sent their outputs.
2. The last value of every key they changed goes to the store's changelog partition.
3. The producer is flushed: outputs and changelog records are on the broker.
4. The local files take the changes, with the changelog offset they now hold up to.
5. The input offsets are committed.

A crash before 3 leaves the changelog without (some of) the batch, and the offsets before it:
the batch is read again against the state before it. A crash after 3 and before 5 leaves the
batch's state on the changelog (and perhaps in the file) with the offsets before it: the batch
is read again against the state after it, and the rule cores know every input they have applied
(a receipt comes back "replayed"), so nothing counts twice; outputs sent again carry the same ids.
Each step has a failpoint (mallstream/failpoints.py) for the tests that kill a worker there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from mallstream.failpoints import failpoint

from .store import LaneStore, PartitionStore

log = logging.getLogger(__name__)


class Checkpoint:
    """Commits one lane's batches: its stores' changes, then its offsets."""

    def __init__(self, app: faust.App, group: str, stores: Sequence[LaneStore]) -> None:
        self.app = app
        self.group = group
        self.stores = stores
        #: checkpoints done, and changelog records they produced (the worker's /stats/ shows them)
        self.done = 0
        self.changelog_records = 0

    async def commit(self, consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
        failpoint(f"lane.{self.group}.after_steps")
        sent = []
        producer = self.app.producer
        for store in self.stores:
            for partition, held in store.held():
                for key, value in held.take_changed().items():
                    receipt = await producer.send(store.changelog, key, value, partition, None, None)
                    sent.append((held, receipt))
        self.changelog_records += len(sent)
        failpoint(f"lane.{self.group}.after_changelog")
        await producer.flush()
        failpoint(f"lane.{self.group}.after_flush")
        applied: dict[PartitionStore, int] = {}
        for held, receipt in sent:
            applied[held] = max(applied.get(held, 0), (await receipt).offset + 1)
        for store in self.stores:
            for _, held in store.held():
                if held.unsaved or held in applied:
                    held.save(applied.get(held))
        failpoint(f"lane.{self.group}.after_save")
        if offsets:
            try:
                await consumer.commit(dict(offsets))
            except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as exc:
                # the partitions moved meanwhile: their new owner reads these records again, and the steps are idempotent
                log.warning("lane %s: offsets not committed (%s); the records come again", self.group, exc)
        failpoint(f"lane.{self.group}.after_commit")
        self.done += 1
