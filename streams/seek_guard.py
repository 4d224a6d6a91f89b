"""Records fetched before a seek must not be handed out, or counted as read, after it.

At the end of a rebalance faust resumes the stream partitions and only then seeks them to
their committed offsets (``Recovery.on_recovery_completed``: ``resume_partitions``, then
``await perform_seek()``, then ``flow_control.resume()``, which empties every agent's queue),
with the flow already running. While the seek waits for the broker, the drain loop
(``Consumer._drain_messages``) hands out records of the batch it holds, and sets the read
offset (``_read_offset``) to each one's offset once delivered, also after the seek has put
it back to the committed offset. Then:

* records handed out during the seek and still queued are thrown away unacked when the
  queues are emptied;
* their copies fetched again from the committed offset count as read (the read offset is
  past them) and are dropped unseen, or the jump from the committed offset to the held
  batch is taken for a gap in the log (``_add_gap``) and counted as acked.

An offset lost both ways is never acked: ``_new_offset`` sees a gap at the head of the
partition's acks and faust never commits that partition again; the worker is idle and its
lag never reaches zero. Where a false gap and real acks overlap, ``_acked`` holds offsets
twice and each commit advances the partition by one offset. Traced in
tests/test_crash_recovery.py: pos.by_member:2 at committed offset 74, records 100-108 handed
out during the seek and never acked, their second copies dropped at read offset 534, commits
stuck at 100 while the other partitions crept 76, 77, 78. It needs a worker whose
predecessor committed something and records arriving during the seek; it showed up once
streams/fetch_wait.py changed when fetches complete, but the race is faust's. Here:

* a fetch from the consumer thread and a seek never overlap (one lock), so a batch is
  from before a seek or from after it;
* nothing is handed out while a seek runs; after it, the rest of a batch from before it
  is skipped on the partitions it moved (they are fetched again from there);
* a record still being delivered when the seek landed does not keep the read offset:
  the seek's is put back.

(Holding the resumes back until the end of that step instead was tried: it leaves the
consumer's active partition set empty during the seek, and aiokafka's ``fetched_records``
reads an empty set as "all partitions", so it handed out records faust then discarded.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import Consumer, ThreadDelegateConsumer

_perform_seek = Consumer.perform_seek
_getmany = Consumer.getmany
_fetch = ThreadDelegateConsumer._getmany


class _SeekState:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.idle = asyncio.Event()
        self.idle.set()
        self.epoch = 0  # bumped by every seek
        self.batch_epoch = 0  # the epoch the last fetched batch belongs to
        self.moved: dict[Any, int] = {}  # partition -> read offset the last seek set


def _state(consumer: Consumer) -> _SeekState:
    state = consumer.__dict__.get("_seek_guard")
    if state is None:
        state = consumer.__dict__["_seek_guard"] = _SeekState()
    return state


async def _perform_seek_alone(self: Consumer) -> None:
    state = _state(self)
    async with state.lock:
        state.idle.clear()
        try:
            await _perform_seek(self)
            # seek_to_committed moves only partitions with a committed offset > 0
            state.moved = {tp: offset for tp, offset in self._read_offset.items() if offset}
        finally:
            state.epoch += 1
            state.idle.set()


async def _fetch_between_seeks(self: ThreadDelegateConsumer, active_partitions: Any, timeout: float) -> Any:
    state = _state(self)
    async with state.lock:
        records = await _fetch(self, active_partitions, timeout)
        state.batch_epoch = state.epoch
    return records


async def _getmany_without_stale(self: Consumer, timeout: float) -> Any:
    state = _state(self)
    async for tp, message in _getmany(self, timeout):
        if not state.idle.is_set():
            await state.idle.wait()
        if state.batch_epoch != state.epoch and tp in state.moved:
            continue  # fetched before a seek moved this partition: it is fetched again from there
        epoch = state.epoch
        yield tp, message
        # the drain loop has delivered it and set the read offset to its offset
        if state.epoch != epoch and tp in state.moved:
            self._read_offset[tp] = state.moved[tp]


def install() -> None:
    """Patch faust's consumer; call before the app starts (idempotent)."""
    Consumer.perform_seek = _perform_seek_alone  # type: ignore[method-assign]
    Consumer.getmany = _getmany_without_stale  # type: ignore[method-assign]
    ThreadDelegateConsumer._getmany = _fetch_between_seeks  # type: ignore[method-assign]
