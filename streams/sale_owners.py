"""The router's memory of who made each sale, kept only as long as a return of it can still come.

A return made without the card reaches the member of the original sale through this table
(keyed by the sale's txn_id, like ``pos.transactions``). The loyalty engine refuses a receipt
whose business day is more than the rule file's ``retention_days`` older than the card's
newest, so an owner older than that is never asked for again: the table holds a window of
sales, not the whole history.

Each partition forgets its own oldest sales as its stream moves on, because a table write
(a tombstone too) goes to the changelog partition of the event being processed. The order
of forgetting is kept in memory, in the order sales arrived; after a start or a rebalance it
is read back from the table once. A value is ``member NUL business-day ordinal``; a value
from before the window was kept (the member alone) counts as day 0 and goes first.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from typing import Any

from .topics import partition_of


def _owner_and_day(stored: bytes) -> tuple[str, int]:
    member, _, day = stored.decode().partition("\0")
    return member, int(day or 0)


class SaleOwners:
    """Sale txn_id -> the member who made it, over a faust table, forgotten after the retention window."""

    def __init__(self, table: Any, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        #: per partition: (business day, sale key) in the order they are to be forgotten; None: read again
        self._order: dict[int, deque[tuple[int, bytes]]] | None = None

    def owner(self, sale: bytes) -> str | None:
        stored = self.table.get(sale)
        return _owner_and_day(stored)[0] if stored else None

    def remember(self, sale: bytes, member: str, day: dt.date, partition: int) -> None:
        self.table[sale] = b"%s\0%d" % (member.encode(), day.toordinal())
        self._queue(partition).append((day.toordinal(), sale))

    def forget_before(self, day: dt.date, partition: int) -> int:
        """Drop the partition's sales of business days before ``day``; how many went."""
        queue, cutoff, forgotten = self._queue(partition), day.toordinal(), 0
        while queue and queue[0][0] < cutoff:
            _, sale = queue.popleft()
            stored = self.table.get(sale)
            if stored is not None and _owner_and_day(stored)[1] < cutoff:  # not remembered again since
                del self.table[sale]
                forgotten += 1
        return forgotten

    def reread(self) -> None:
        """Partitions moved: read the order back from the table when next needed."""
        self._order = None

    def _queue(self, partition: int) -> deque[tuple[int, bytes]]:
        if self._order is None:
            held: dict[int, list[tuple[int, bytes]]] = {}
            for sale, stored in list(self.table.items()):
                held.setdefault(partition_of(sale, self.partitions), []).append((_owner_and_day(stored)[1], sale))
            self._order = {p: deque(sorted(sales)) for p, sales in held.items()}
        return self._order.setdefault(partition, deque())
