"""The router's memory of who made each sale, kept only as long as a return of it can still come.

A return made without the card reaches the member of the original sale through this table
(keyed by the sale's txn_id, like ``pos.transactions``). The loyalty engine refuses a receipt
whose business day is more than the rule file's ``retention_days`` older than the card's
newest, so an owner older than that is never asked for again: the table holds a window of
sales, not the whole history.

The owners are a store of the receipts lane, one per partition of ``pos.transactions``. Each
partition forgets its own oldest sales as its stream moves on. The order of forgetting is kept
in memory, in the order sales arrived; after a start or a rebalance it is read back from the
partition's store once. A value is ``member NUL business-day ordinal``; a value
from before the window was kept (the member alone) counts as day 0 and goes first.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, MutableMapping

#: The store of one partition's owners.
Owners = MutableMapping[bytes, bytes]


def _owner_and_day(stored: bytes) -> tuple[str, int]:
    member, _, day = stored.decode().partition("\0")
    return member, int(day or 0)


class SaleOwners:
    """Sale txn_id -> the member who made it, per partition, forgotten after the retention window."""

    def __init__(self, store: Callable[[int], Owners]) -> None:
        #: partition -> its owners (a lane store's partition)
        self.store = store
        #: per partition: (business day, sale key) in the order they are to be forgotten
        self._order: dict[int, deque[tuple[int, bytes]]] = {}

    def owner(self, sale: bytes, partition: int) -> str | None:
        stored = self.store(partition).get(sale)
        return _owner_and_day(stored)[0] if stored else None

    def remember(self, sale: bytes, member: str, day: dt.date, partition: int) -> None:
        self.store(partition)[sale] = b"%s\0%d" % (member.encode(), day.toordinal())
        self._queue(partition).append((day.toordinal(), sale))

    def forget_before(self, day: dt.date, partition: int) -> int:
        """Drop the partition's sales of business days before ``day``; how many went."""
        queue, owners, cutoff, forgotten = self._queue(partition), self.store(partition), day.toordinal(), 0
        while queue and queue[0][0] < cutoff:
            _, sale = queue.popleft()
            stored = owners.get(sale)
            if stored is not None and _owner_and_day(stored)[1] < cutoff:  # not remembered again since
                del owners[sale]
                forgotten += 1
        return forgotten

    def forget_partitions(self, partitions: set[int]) -> None:
        """Partitions moved: their order is read back from their stores when next needed."""
        for partition in partitions:
            self._order.pop(partition, None)

    def _queue(self, partition: int) -> deque[tuple[int, bytes]]:
        queue = self._order.get(partition)
        if queue is None:
            held = sorted((_owner_and_day(stored)[1], sale) for sale, stored in self.store(partition).items())
            queue = self._order[partition] = deque(held)
        return queue
