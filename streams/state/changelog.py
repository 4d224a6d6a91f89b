"""Bringing a partition's store up to date from its changelog, before the lane reads the partition.

A store's local file says up to which changelog offset it holds the state; the changelog is
read from there to its end. A file that claims more than the changelog has (the broker's data
was reset under a kept state directory) is dropped and the state read whole. A changelog
trimmed past the file's offset (the retention keeper trims only up to the offset the file
holds, with one worker in the group) means state was lost: that is said loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from .store import PartitionStore

log = logging.getLogger(__name__)

#: The most changelog records one fetch of a restore returns.
RESTORE_BATCH = 10_000


async def restore(consumer: AIOKafkaConsumer, stores: Sequence[tuple[TopicPartition, PartitionStore]]) -> int:
    """Read each changelog partition from what its store holds to the end; return how many records were applied.

    ``consumer`` belongs to no group: the changelog partitions are assigned to it here.
    """
    if not stores:
        return 0
    by_tp = dict(stores)
    consumer.assign(list(by_tp))
    ends = await consumer.end_offsets(list(by_tp))
    starts = await consumer.beginning_offsets(list(by_tp))
    for tp, store in by_tp.items():
        if store.applied > ends[tp]:
            log.warning(
                "%s: the local state holds up to offset %d, the changelog ends at %d; "
                "the local state is dropped and read again from the changelog",
                tp,
                store.applied,
                ends[tp],
            )
            store.forget_local()
        if starts[tp] > store.applied:
            if store.applied > 0 or len(store):
                log.error(
                    "%s: the changelog starts at %d, after the local state's %d: changes between are lost",
                    tp,
                    starts[tp],
                    store.applied,
                )
            store.applied = starts[tp]
        consumer.seek(tp, store.applied)
    applied = 0
    left = {tp for tp in by_tp if by_tp[tp].applied < ends[tp]}
    while left:
        got = await consumer.getmany(*left, timeout_ms=1000, max_records=RESTORE_BATCH)
        for tp, records in got.items():
            store = by_tp[tp]
            for record in records:
                store.apply(record.key, record.value, record.offset)
            applied += len(records)
        for tp in list(left):
            if await consumer.position(tp) >= ends[tp]:
                by_tp[tp].applied = ends[tp]
                left.discard(tp)
    for store in by_tp.values():
        store.save()
    return applied
