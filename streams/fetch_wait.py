"""Give the worker's Kafka consumer a long poll even when the broker answers empty fetches at once.

A Kafka broker holds an empty fetch for up to ``fetch.max.wait.ms`` and answers as soon as
data arrives. noida-db, the embedded broker, answers at once, so aiokafka re-sends the
fetch for every assigned partition (some 200 with the tables' changelogs) nonstop: an
idle worker burnt 95 % of a core on it, and a busy one lost half its time slices to it.
After an empty answer the fetch to that broker now waits ``kafka.empty_fetch_wait_ms``
before it is sent again. A fetch that brought records is followed at once, so under load
nothing changes; idle, a new record waits at most that long more.

A consumer that asks the broker to gather (``fetch_min_bytes`` above 1, as the sink lane
does) would have Kafka hold each fetch up to ``fetch_max_wait_ms`` while data trickles
in. noida-db answers at once with the few records there are, and the sink lane spent
a tenth of the worker's CPU fetching a handful of records at a time across its 68
partitions. Such a consumer now waits ``fetch_max_wait_ms`` after every fetch instead.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.consumer.fetcher import Fetcher

_fetch = Fetcher._proc_fetch_request
_wait_s = 0.0


async def _fetch_then_wait(self: Fetcher, assignment: object, node_id: int, request: object) -> bool:
    got_records = await _fetch(self, assignment, node_id, request)
    if self._fetch_min_bytes > 1:  # a gathering consumer: Kafka would have held the fetch this long
        wait_s = self._fetch_max_wait_ms / 1000
    else:
        wait_s = 0.0 if got_records else _wait_s
    if wait_s:
        # the node stays in flight meanwhile, so no other fetch goes to it;
        # Fetcher.close() cancels a pending fetch and awaits it: like aiokafka's own
        # fetch, a cancelled wait ends quietly instead of raising out of close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(wait_s)
    return got_records


def install(wait_ms: int) -> None:
    """Wait ``wait_ms`` after an empty fetch (0: send the next one at once, aiokafka's own way); a gathering
    consumer waits its own ``fetch_max_wait_ms`` after every fetch."""
    global _wait_s
    _wait_s = wait_ms / 1000
    Fetcher._proc_fetch_request = _fetch_then_wait  # type: ignore[method-assign]
