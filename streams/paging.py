"""Messages that fit the producer's limit however long the history behind them: split batches, paged state.

Kafka refuses a record over the producer's ``max_request_size`` (``kafka.max_request_size``), and
a worker that meets one dies. A batch of events or rows grows with the backlog it was cut from,
and a mall's footfall or parking state with its counters and the cars inside, so neither may be
sent as one record unchecked:

* :func:`fitting` encodes a batch as few consecutive records as fit, in order;
* :class:`PagedTable` keeps a faust table value that outgrows a record as pages under keys of
  their own, and a small header under the value's key that names them. A new value's pages
  are written under a new generation before the header switches to them, so a crash between
  two writes leaves the old value whole: recovery reads the header, then the pages it names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from .records import Record, encode

T = TypeVar("T")

#: What a record costs beyond its value: key, headers, and the record batch's own framing.
RECORD_OVERHEAD = 1024
#: First bytes of a paged value's header: 0xc1 is never the first byte of msgpack, which every state is.
PAGED = b"\xc1pages:"


class MessageTooLarge(ValueError):
    """One item alone is over the limit: nothing can split it."""


def payload_limit(max_request_size: int) -> int:
    """The most bytes a record's value may take under the producer's ``max_request_size``."""
    return max_request_size - RECORD_OVERHEAD


def fitting(items: Sequence[T], wrap: Callable[[list[T]], Record], limit: int) -> Iterator[bytes]:
    """``wrap(items)`` encoded, or, when that is over ``limit`` bytes, its halves, recursively, in order.

    No items, no record. The common batch fits and is encoded once; a batch over the limit
    costs about one more encoding per halving.
    """
    if not items:
        return
    encoded = encode(wrap(list(items)))
    if len(encoded) <= limit:
        yield encoded
        return
    if len(items) == 1:
        raise MessageTooLarge(f"one {type(items[0]).__name__} takes {len(encoded)} bytes, over the {limit}-byte limit")
    half = len(items) // 2
    yield from fitting(items[:half], wrap, limit)
    yield from fitting(items[half:], wrap, limit)


#: What sets a page's key apart from the value keys (member, mall ids) of the tables paged.
PAGE_MARK = b"\x00page\x00"


def _page_key(key: bytes, generation: int, index: int) -> bytes:
    return b"%s%s%d\x00%d" % (key, PAGE_MARK, generation, index)


def _header(stored: bytes | None) -> tuple[int, int] | None:
    """(generation, page count) of a paged value's header; None for a value stored whole (or none)."""
    if stored is None or not stored.startswith(PAGED):
        return None
    generation, count = stored[len(PAGED) :].split(b":")
    return int(generation), int(count)


class PagedTable:
    """A faust table of bytes whose values may be larger than one Kafka record.

    Values that fit are stored as they are (a store written before paging reads the same);
    a larger one is cut into pages of ``page_bytes``. Writes go to the changelog partition of
    the event being processed, as any table write, so the pages travel with their header.
    """

    def __init__(self, table: Any, page_bytes: int) -> None:
        self.table = table
        self.page_bytes = page_bytes

    def get(self, key: bytes) -> bytes | None:
        stored = self.table.get(key)
        return self._whole(key, stored) if stored is not None else None

    def keys(self) -> list[bytes]:
        """Every value's key; pages are no keys of their own.

        Read a value with :meth:`get` in the stream of its partition: a store is read per partition there.
        """
        return [key for key in list(self.table.keys()) if PAGE_MARK not in key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys())

    def _whole(self, key: bytes, stored: bytes) -> bytes:
        header = _header(stored)
        if header is None:
            return stored
        generation, count = header
        return b"".join(self.table[_page_key(key, generation, index)] for index in range(count))

    def __setitem__(self, key: bytes, value: bytes) -> None:
        previous = _header(self.table.get(key))
        if len(value) <= self.page_bytes and not value.startswith(PAGED):
            self.table[key] = value
        else:
            generation = previous[0] + 1 if previous else 0
            pages = range(0, len(value), self.page_bytes)
            for index, start in enumerate(pages):
                self.table[_page_key(key, generation, index)] = value[start : start + self.page_bytes]
            self.table[key] = PAGED + b"%d:%d" % (generation, len(pages))
        if previous is not None:
            old_generation, old_count = previous
            for index in range(old_count):
                del self.table[_page_key(key, old_generation, index)]
