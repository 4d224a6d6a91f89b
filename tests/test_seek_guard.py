"""Records fetched before faust's seek to committed offsets are not handed out, nor counted as read, after it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from faust.types import TP

from mallstream.streams import seek_guard

MOVED = TP("pos.by_member", 1)  # committed offset 2: the seek moves it back there
UNMOVED = TP("pos.by_member", 3)  # nothing committed: the seek leaves it where it is


@dataclass
class _Message:
    offset: int


@dataclass
class _Consumer:
    _read_offset: dict = field(default_factory=dict)


async def _seek(consumer: _Consumer) -> None:
    await asyncio.sleep(0.01)  # the broker's answer
    consumer._read_offset.update({MOVED: 2, UNMOVED: None})


async def _batch_from_before_the_seek(consumer: _Consumer, timeout: float):  # type: ignore[no-untyped-def]
    for offset in range(2, 6):
        yield MOVED, _Message(offset)
        yield UNMOVED, _Message(offset)


def _drain(consumer: _Consumer, seek_during: int) -> list[tuple[int, int]]:
    """What faust's drain loop does with each record, with the seek landing while one is delivered."""

    async def drain() -> list[tuple[int, int]]:
        delivered = []
        async for tp, message in seek_guard._getmany_without_stale(consumer, 1.0):
            delivered.append((tp.partition, message.offset))
            if (tp, message.offset) == (MOVED, seek_during):
                await seek_guard._perform_seek_alone(consumer)
            consumer._read_offset[tp] = message.offset  # set_read_offset after delivering
        return delivered

    return asyncio.run(drain())


def test_the_rest_of_a_batch_from_before_a_seek_is_skipped_on_the_partitions_it_moved(monkeypatch) -> None:
    monkeypatch.setattr(seek_guard, "_perform_seek", _seek)
    monkeypatch.setattr(seek_guard, "_getmany", _batch_from_before_the_seek)
    consumer = _Consumer()
    delivered = _drain(consumer, seek_during=3)
    # partition 1 is fetched again from 2; partition 3 was not moved, so all of it is handed out
    assert delivered == [(1, 2), (3, 2), (1, 3), (3, 3), (3, 4), (3, 5)]
    # the record delivered while the seek landed does not keep the read offset: 2 and 3 are read again
    assert consumer._read_offset[MOVED] == 2
    assert consumer._read_offset[UNMOVED] == 5


def test_a_fetch_does_not_overlap_a_seek(monkeypatch) -> None:
    log = []

    async def seek(consumer: _Consumer) -> None:
        log.append("seek starts")
        await asyncio.sleep(0.05)
        log.append("seek ends")

    async def fetch(consumer: _Consumer, active: object, timeout: float) -> dict:
        log.append("fetch")
        return {}

    monkeypatch.setattr(seek_guard, "_perform_seek", seek)
    monkeypatch.setattr(seek_guard, "_fetch", fetch)
    consumer = _Consumer()

    async def scenario() -> None:
        seeking = asyncio.ensure_future(seek_guard._perform_seek_alone(consumer))
        await asyncio.sleep(0.01)
        await seek_guard._fetch_between_seeks(consumer, set(), 1.0)
        await seeking

    asyncio.run(scenario())
    assert log == ["seek starts", "seek ends", "fetch"]
