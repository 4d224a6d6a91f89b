"""What an agent may use of the worker it runs in: a small context, not the whole hub.

An agent sends to topics, turns a failing record into a dead letter, counts, writes an audit
record, registers its timers and faust agents, and reads the settings; its lanes and what it
needs of other agents (the loyalty rule book) are given to it by name. The worker's ``Hub``
is one such context; a unit test builds an agent from a stub (tests/support/context.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord

    from mallstream.settings import Settings

    from .core.malls import MallDirectory
    from .records import AuditRecord
    from .topics import TopicSpec


class Topic(Protocol):
    """Where an agent sends: a faust topic, or a test's recorder."""

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None) -> Any:
        """Queue one record; the result is awaited for the broker's acknowledgement."""


class AgentContext(Protocol):
    """The worker as an agent sees it."""

    settings: Settings
    #: the worker's counters (its /stats/ shows them)
    counters: Counter[str]
    #: the most bytes a record's value may take (streams/paging.py)
    payload_limit: int
    #: where the lanes keep their stores' local files
    lanes_dir: Path
    #: where events that name no mall belong
    malls: MallDirectory

    def topic(self, spec: TopicSpec) -> Topic:
        """The topic to send ``spec``'s records to."""

    def dead_letter_on_failure(self, source: ConsumerRecord | Any, stage: str) -> AbstractAsyncContextManager[None]:
        """Whatever goes wrong with one record in the block makes it a dead letter; the step goes on."""

    async def audit(self, record: AuditRecord) -> None:
        """Record who did what, when and why."""

    def timer(self, seconds: float, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` every ``seconds`` while the worker runs."""

    def agent(self, spec: TopicSpec, name: str, run: Callable[[Any], Awaitable[None]]) -> None:
        """Run ``run`` as a faust agent over ``spec``'s topic (stateless work only: state lives in lanes)."""
