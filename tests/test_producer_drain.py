"""The pre-commit flush waits for every buffered changelog message, however slow the hand-over."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.transport.producer import ProducerBuffer

from mallstream.streams import producer_drain


class SlowChannel:
    """Hands each message over in 0.25 s, longer than faust's 0.1 s patience."""

    def __init__(self) -> None:
        self.published: list[int] = []

    async def publish_message(self, fut: SimpleNamespace, wait: bool = False) -> None:
        await asyncio.sleep(0.25)
        self.published.append(fut.number)


def test_flush_returns_only_when_the_buffer_is_empty() -> None:
    async def scenario() -> tuple[int, list[int]]:
        producer_drain.install()
        channel = SlowChannel()
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        await buffer.start()
        try:
            for number in range(5):
                buffer.put(SimpleNamespace(number=number, message=SimpleNamespace(channel=channel)))
            await buffer.flush()
            return buffer.size, channel.published
        finally:
            await buffer.stop()

    left, published = asyncio.run(scenario())
    assert left == 0
    assert published == [0, 1, 2, 3, 4]
