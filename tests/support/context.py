"""A stub of what an agent may use of the worker (streams/context.py): sends recorded, no broker.

With it an agent is built and its lane steps driven in a unit test: records in, what it sent
and what its stores hold out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from aiokafka import ConsumerRecord

from mallstream.settings import Settings
from mallstream.streams.core.malls import MallDirectory
from mallstream.streams.lanes import BatchLane
from mallstream.streams.paging import payload_limit
from mallstream.streams.records import AuditRecord, Record, decode, encode
from mallstream.streams.topics import TopicSpec


class RecordingTopic:
    """A topic that keeps what was sent to it; every send is acknowledged at once."""

    def __init__(self, spec: TopicSpec) -> None:
        self.spec = spec
        self.sent: list[tuple[bytes | None, bytes | None]] = []

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None) -> Any:
        self.sent.append((key, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def records(self) -> list[Any]:
        """What was sent, decoded as the topic's record type."""
        return [decode(self.spec.record, value) for _, value in self.sent if value is not None]


class StubContext:
    """The agent's view of a worker, with sends, dead letters, audits, timers and agents recorded."""

    def __init__(self, settings: Settings, lanes_dir: Path) -> None:
        self.settings = settings
        self.counters: Counter[str] = Counter()
        self.payload_limit = payload_limit(settings.kafka.max_request_size)
        self.lanes_dir = lanes_dir
        self.malls = MallDirectory(settings.malls)
        self.topics: dict[str, RecordingTopic] = {}
        self.dead_letters: list[tuple[str, str]] = []
        self.audits: list[AuditRecord] = []
        self.timers: dict[str, float] = {}
        self.agents: dict[str, str] = {}
        #: a faust app that is never started: the lanes need one to be built
        self.app = faust.App("stub", autodiscover=False)

    def topic(self, spec: TopicSpec) -> RecordingTopic:
        return self.topics.setdefault(spec.name, RecordingTopic(spec))

    @contextlib.asynccontextmanager
    async def dead_letter_on_failure(self, source: ConsumerRecord, stage: str) -> AsyncIterator[None]:
        try:
            yield
        except Exception as exc:
            self.dead_letters.append((stage, repr(exc)))

    async def audit(self, record: AuditRecord) -> None:
        self.audits.append(record)

    def timer(self, seconds: float, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self.timers[name] = seconds

    def agent(self, spec: TopicSpec, name: str, run: Callable[[Any], Awaitable[None]]) -> None:
        self.agents[name] = spec.name

    def lane(self, name: str) -> BatchLane:
        """A lane as the worker builds it (never started): its steps are called by the test."""
        return BatchLane(self.app, self.settings.kafka, self.settings.worker, f"stub-{name}", 100, 0.0)


def held(lane: BatchLane, *partitions: int) -> None:
    """Open the lane's stores for ``partitions`` as an assignment would (empty: nothing restored)."""
    for store in lane.stores.values():
        for partition in partitions:
            store.opened(partition)
    lane.held |= set(partitions)


async def feed(lane: BatchLane, topic: str, keyed: list[tuple[bytes, Record]], partition: int = 0) -> None:
    """Hand ``keyed`` records to the lane's steps of ``topic`` as one batch of one partition."""
    records = [
        ConsumerRecord(topic, partition, offset, 0, 0, key, encode(value), None, len(key), 0, ())
        for offset, (key, value) in enumerate(keyed)
    ]
    for step in lane.steps[topic]:
        await step(records)
