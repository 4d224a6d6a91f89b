"""Give the worker's Kafka consumer a long poll even when the broker answers empty fetches at once.

A Kafka broker holds an empty fetch for up to ``fetch.max.wait.ms`` and answers as soon as
data arrives. noida-db, the embedded broker, answers at once, so aiokafka re-sends the
fetch for every assigned partition (some 200 with the tables' changelogs) nonstop: an
idle worker burnt 95 % of a core on it, and a busy one lost half its time slices to it.
After an empty answer the fetch to that broker now waits ``kafka.empty_fetch_wait_ms``
before it is sent again. A fetch that brought records is followed at once, so under load
nothing changes; idle, a new record waits at most that long more.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.consumer.fetcher import Fetcher

_fetch = Fetcher._proc_fetch_request
_wait_s = 0.0


async def _fetch_then_wait_if_empty(self: Fetcher, assignment: object, node_id: int, request: object) -> bool:
    got_records = await _fetch(self, assignment, node_id, request)
    if not got_records and _wait_s:
        # the node stays in flight meanwhile, so no other fetch goes to it;
        # Fetcher.close() cancels a pending fetch and awaits it: like aiokafka's own
        # fetch, a cancelled wait ends quietly instead of raising out of close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(_wait_s)
    return got_records


def install(wait_ms: int) -> None:
    """Wait ``wait_ms`` after an empty fetch (0: send the next one at once, aiokafka's own way)."""
    global _wait_s
    _wait_s = wait_ms / 1000
    Fetcher._proc_fetch_request = _fetch_then_wait_if_empty  # type: ignore[method-assign]
