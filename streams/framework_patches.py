"""Every change this project makes to faust-streaming, mode-streaming and aiokafka, in one place.

They replace private methods, so they hold only for the exact versions they were written and
tested against (:data:`VERIFIED`, pinned alike in pyproject.toml): :func:`install` refuses to start
on any other, rather than let an upgrade break them silently. Each is applied only where it is
needed:

=================  ==================================================  ====================
patch              upstream defect it works around                     applied
=================  ==================================================  ====================
seek guard         faust hands out records while it seeks to the       always (faust's race)
                   committed offsets at the end of a rebalance
producer drain     faust's pre-commit flush gives up after 0.1 s       always (faust's flush)
fetch pacing       none: noida-db answers fetches at once, where       only when the broker
                   Kafka holds them (``kafka.broker_long_polls``)      does not long-poll
=================  ==================================================  ====================
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiokafka.consumer.fetcher import Fetcher
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.producer import ProducerBuffer

#: The versions the patches below were written and tested against (pyproject.toml pins the same).
VERIFIED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}


class FrameworkVersionError(Exception):
    """A patched library is installed at a version the patches were not verified against."""


class ProducerFlushTimeout(RuntimeError):
    """What was produced did not reach the broker in time; the offsets it should precede stay uncommitted."""


def check_versions() -> None:
    """Raise :class:`FrameworkVersionError` naming the first library not at its verified version."""
    for package, expected in VERIFIED.items():
        try:
            found = version(package)
        except PackageNotFoundError:
            found = "not installed"
        if found != expected:
            raise FrameworkVersionError(
                f"{package} {found} is installed, but mallstream patches its internals and was verified only "
                f"with {package}=={expected} (streams/framework_patches.py): install that version "
                f"(pip install -e .) or re-verify the patches before changing the pin"
            )


def install(*, broker_long_polls: bool, empty_fetch_wait_ms: int, flush_timeout_s: float) -> None:
    """Check the versions, then apply the patches this broker needs; call before the app starts (idempotent).

    ``broker_long_polls``: the broker holds an empty fetch (Kafka), so the fetch pacing stays off.
    """
    check_versions()
    global _flush_timeout_s, _empty_fetch_wait_s
    _flush_timeout_s = flush_timeout_s
    _empty_fetch_wait_s = empty_fetch_wait_ms / 1000
    Consumer.perform_seek = _perform_seek_alone  # type: ignore[method-assign]
    Consumer.getmany = _getmany_without_stale  # type: ignore[method-assign]
    ThreadDelegateConsumer._getmany = _fetch_between_seeks  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _counted_hand_over  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_until_sent  # type: ignore[method-assign]
    Fetcher._proc_fetch_request = _proc_fetch_request if broker_long_polls else _fetch_then_wait  # type: ignore[method-assign]


# -- seek guard: faust Consumer.perform_seek, Consumer.getmany, ThreadDelegateConsumer._getmany ------------------
#
# Upstream defect (faust-streaming 0.15.3, faust/tables/recovery.py Recovery.on_recovery_completed; reported as
# faust-streaming issue #596, "A race condition in recovery causes unrecoverable gaps in acked offsets and
# consequently blocks committing", open): at the end
# of a rebalance faust resumes the stream partitions and only then awaits ``Consumer.perform_seek()`` to the
# committed offsets, with the flow already running. While the seek waits for the broker, the drain loop
# (``Consumer._drain_messages``) hands out records of the batch it holds, and sets the read offset
# (``_read_offset``) to each one's offset once delivered, also after the seek has put it back. Then:
#
# * records handed out during the seek and still queued are thrown away unacked when ``flow_control.resume()``
#   empties every agent's queue;
# * their copies fetched again from the committed offset count as read (the read offset is past them) and are
#   dropped unseen, or the jump from the committed offset to the held batch is taken for a gap in the log
#   (``_add_gap``) and counted as acked.
#
# An offset lost both ways is never acked: ``_new_offset`` sees a gap at the head of the partition's acks and
# faust never commits that partition again; the worker idles with a lag that never reaches zero. Traced in
# tests/test_crash_recovery.py: pos.by_member:2 at committed offset 74, records 100-108 handed out during the
# seek and never acked, commits stuck at 100. It needs a worker whose predecessor committed something and
# records arriving during the seek; the broker only sets how long the seek takes, so it holds on Kafka too.
# Here:
#
# * a fetch from the consumer thread and a seek never overlap (one lock), so a batch is from before a seek or
#   from after it;
# * nothing is handed out while a seek runs; after it, the rest of a batch from before it is skipped on the
#   partitions it moved (they are fetched again from there);
# * a record still being delivered when the seek landed does not keep the read offset: the seek's is put back.
#
# (Holding the resumes back until the seek is done was tried instead: it leaves the consumer's active partition
# set empty during the seek, and aiokafka's ``fetched_records`` reads an empty set as "all partitions", so it
# handed out records faust then discarded.)

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


def _seek_state(consumer: Consumer) -> _SeekState:
    state = consumer.__dict__.get("_seek_guard")
    if state is None:
        state = consumer.__dict__["_seek_guard"] = _SeekState()
    return state


async def _perform_seek_alone(self: Consumer) -> None:
    state = _seek_state(self)
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
    state = _seek_state(self)
    async with state.lock:
        records = await _fetch(self, active_partitions, timeout)
        state.batch_epoch = state.epoch
    return records


async def _getmany_without_stale(self: Consumer, timeout: float) -> Any:
    state = _seek_state(self)
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


# -- producer drain: faust ProducerBuffer._send_pending, ProducerBuffer.flush ------------------------------------
#
# Upstream defect (faust-streaming 0.15.3, faust/transport/producer.py ProducerBuffer.flush_atmost; no upstream
# issue found): faust flushes its producer before it commits input offsets (``Consumer._commit_offsets``, since
# faust-streaming pull request #273, "flushing producer before commit"), but the buffer of table changelog
# messages gives up as soon as one message takes longer than 0.1 s to hand over, which happens whenever the event
# loop is busy, and it counts a message taken off its queue as sent while the hand-over is still running. Offsets
# can then be committed while changelog messages are still only in memory: a crash at that moment loses table
# state for inputs that are never redelivered. The event loop is as busy on Kafka, so it holds there too. Here
# the flush waits until the queue is empty and nothing is in flight, the order at-least-once needs (changelog
# and outputs on the broker first, input offsets after), but at most ``kafka.flush_timeout_s``: then it raises
# :class:`ProducerFlushTimeout`, which stops the worker with nothing committed, instead of waiting forever.

_hand_over = ProducerBuffer._send_pending
_flush_timeout_s = 60.0


async def _counted_hand_over(self: ProducerBuffer, fut: object) -> None:
    self.in_flight = getattr(self, "in_flight", 0) + 1
    try:
        await _hand_over(self, fut)
    finally:
        self.in_flight -= 1


async def _flush_until_sent(self: ProducerBuffer) -> None:
    deadline = time.monotonic() + _flush_timeout_s
    while self.size or getattr(self, "in_flight", 0):
        if self.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        if time.monotonic() >= deadline:
            raise ProducerFlushTimeout(
                f"the producer could not hand {self.size} queued and {getattr(self, 'in_flight', 0)} started "
                f"messages to the broker within kafka.flush_timeout_s ({_flush_timeout_s:g} s); the offsets "
                "they precede are not committed, so a restarted worker processes their inputs again"
            )
        await asyncio.sleep(0.005)


# -- fetch pacing: aiokafka Fetcher._proc_fetch_request ---------------------------------------------------------
#
# No upstream defect: a Kafka broker holds an empty fetch for up to ``fetch.max.wait.ms`` and answers as soon as
# data arrives, and aiokafka relies on that. noida-db, the embedded broker, answers at once, so aiokafka re-sent
# the fetch for every assigned partition (some 200 with the tables' changelogs) nonstop: an idle worker burnt 95 %
# of a core on it, and a busy one lost half its time slices to it. So, and only when the broker does not
# long-poll (``kafka.broker_long_polls`` false), the fetch to a broker waits ``kafka.empty_fetch_wait_ms`` after
# an empty answer before it is sent again; a fetch that brought records is followed at once.
#
# A consumer that asks the broker to gather (``fetch_min_bytes`` above 1, as the sink lane does) would have Kafka
# hold each fetch up to ``fetch_max_wait_ms`` while data trickles in; noida-db answers at once with the few
# records there are, and the sink lane spent a tenth of the worker's CPU fetching a handful at a time across its
# 68 partitions. Such a consumer waits ``fetch_max_wait_ms`` after every fetch instead.

_proc_fetch_request = Fetcher._proc_fetch_request
_empty_fetch_wait_s = 0.0


async def _fetch_then_wait(self: Fetcher, assignment: object, node_id: int, request: object) -> bool:
    got_records = await _proc_fetch_request(self, assignment, node_id, request)
    if self._fetch_min_bytes > 1:  # a gathering consumer: Kafka would have held the fetch this long
        wait_s = self._fetch_max_wait_ms / 1000
    else:
        wait_s = 0.0 if got_records else _empty_fetch_wait_s
    if wait_s:
        # the node stays in flight meanwhile, so no other fetch goes to it;
        # Fetcher.close() cancels a pending fetch and awaits it: like aiokafka's own
        # fetch, a cancelled wait ends quietly instead of raising out of close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(wait_s)
    return got_records
