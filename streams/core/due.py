"""Keys by when they are next due, so a periodic pass touches the keys due, not all of them.

When is a number: a day's ordinal for daily passes, a moment in seconds for the VIP timer.
A key is in at most one bucket (a partition, or a partition and a time zone) under one
when; putting it again moves it. Heaps are lazy: a moved key's old entry stays until it surfaces
or the heap is compacted, which happens once stale entries outnumber live ones, so the
index stays proportional to the keys it holds however often they move.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

Bucket = TypeVar("Bucket", bound=Hashable)


class DueIndex(Generic[Bucket]):
    """Per bucket, a heap of (when, key); ``_entry`` says which entry of a key counts."""

    def __init__(self) -> None:
        self._heaps: dict[Bucket, list[tuple[float, bytes]]] = {}
        self._entry: dict[bytes, tuple[Bucket, float]] = {}

    def put(self, bucket: Bucket, key: bytes, when: float | None) -> None:
        """Key due at ``when`` in ``bucket``; ``None``: not due at all."""
        if when is None:
            self._entry.pop(key, None)
            return
        if self._entry.get(key) == (bucket, when):
            return
        self._entry[key] = (bucket, when)
        heap = self._heaps.setdefault(bucket, [])
        heapq.heappush(heap, (when, key))
        if len(heap) > 64 and len(heap) > 2 * len(self._entry):
            self._compact()

    def pop_due(self, bucket: Bucket, until: float) -> list[tuple[float, bytes]]:
        """Take out every key of ``bucket`` due at or before ``until``, with when it was due, earliest first."""
        heap = self._heaps.get(bucket, [])
        due = []
        while heap and heap[0][0] <= until:
            when, key = heapq.heappop(heap)
            if self._entry.get(key) == (bucket, when):
                del self._entry[key]
                due.append((when, key))
        return due

    def next_due(self, bucket: Bucket) -> float | None:
        """When the bucket's earliest key is due; None: none is."""
        heap = self._heaps.get(bucket, [])
        while heap and self._entry.get(heap[0][1]) != (bucket, heap[0][0]):
            heapq.heappop(heap)  # moved or taken out since
        return heap[0][0] if heap else None

    def drop(self, buckets: Iterable[Bucket]) -> None:
        """Forget these buckets and their keys."""
        gone = set(buckets)
        for bucket in gone:
            self._heaps.pop(bucket, None)
        self._entry = {key: entry for key, entry in self._entry.items() if entry[0] not in gone}

    def clear(self) -> None:
        self._heaps.clear()
        self._entry.clear()

    def __len__(self) -> int:
        """Keys held."""
        return len(self._entry)

    def _compact(self) -> None:
        heaps: dict[Bucket, list[tuple[float, bytes]]] = {}
        for key, (bucket, when) in self._entry.items():
            heaps.setdefault(bucket, []).append((when, key))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps
