"""Make faust's pre-commit flush wait for every table changelog message.

faust-streaming 0.15 flushes its producer before it commits input offsets, but the
buffer of table changelog messages (``ProducerBuffer.flush``) gives up as soon as
one message takes longer than 0.1 s to hand over, which happens whenever the event
loop is busy, and it counts a message taken off its queue as sent while the hand-over
is still running. Offsets can then be committed while card changes are still only in
memory: a crash at that moment loses state for inputs that will never be redelivered.
Waiting until the queue is empty and nothing is in flight restores the order the
at-least-once design needs: changelog and outputs on the broker first, input offsets after.
"""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer

_hand_over = ProducerBuffer._send_pending


async def _counted_hand_over(self: ProducerBuffer, fut: object) -> None:
    self.in_flight = getattr(self, "in_flight", 0) + 1
    try:
        await _hand_over(self, fut)
    finally:
        self.in_flight -= 1


async def _flush_until_sent(self: ProducerBuffer) -> None:
    while self.size or getattr(self, "in_flight", 0):
        if self.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        await asyncio.sleep(0.005)


def install() -> None:
    """Replace the giving-up flush; call before the app starts (idempotent)."""
    ProducerBuffer._send_pending = _counted_hand_over  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_until_sent  # type: ignore[method-assign]
