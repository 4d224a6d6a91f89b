"""A durable FIFO of messages on their way to Kafka, so a broker outage or a gateway restart loses nothing.

SQLite in WAL mode holds the queue: an append is one transaction, committed with a full
sync before :meth:`Spool.append` returns, so a message the gateway accepted survives a
SIGKILL (and, with ``synchronous=FULL``, a power cut). Messages leave in id order and only
when :meth:`Spool.ack` says the broker has them. The spool is bounded: an append that would
exceed ``max_bytes`` is refused whole with :class:`SpoolFull`, never dropped in silence.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused, so acks stay unambiguous
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL
)
"""
#: How many messages and bytes (keys and values) a selection of the outbox holds.
_TALLY = "SELECT COUNT(*), COALESCE(SUM(LENGTH(value) + COALESCE(LENGTH(key), 0)), 0) FROM outbox"


class SpoolFull(RuntimeError):
    """The spool holds ``max_bytes`` already: the broker has been away too long for the disk budget."""


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record to send."""

    topic: str
    key: bytes | None
    value: bytes

    @property
    def size(self) -> int:
        return len(self.value) + len(self.key or b"")


@dataclass(frozen=True, slots=True)
class Spooled:
    """A message as stored, with the id that acknowledges it."""

    id: int
    message: Message


class Spool:
    """The queue file; safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: Path | str, max_bytes: int = 1 << 30) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        count, size = self._db.execute(_TALLY).fetchone()
        self._count, self._bytes = count, size
        #: Messages refused because the spool was full, since this process opened it.
        self.refused = 0

    def append(self, messages: Sequence[Message]) -> None:
        """Store ``messages`` in one transaction, after everything already queued; SpoolFull if they do not fit."""
        size = sum(message.size for message in messages)
        with self._lock:
            if self._bytes + size > self.max_bytes:
                self.refused += len(messages)
                raise SpoolFull(
                    f"spool {self.path} holds {self._bytes} bytes; {len(messages)} messages ({size} bytes) "
                    f"would pass its limit of {self.max_bytes} bytes"
                )
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO outbox (topic, key, value) VALUES (?, ?, ?)",
                    [(m.topic, m.key, m.value) for m in messages],
                )
            self._count += len(messages)
            self._bytes += size

    def peek(self, limit: int, after: int = 0) -> list[Spooled]:
        """The oldest ``limit`` messages with ids above ``after``, oldest first, left in place until acknowledged."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, key, value FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                                    (after, limit)).fetchall()
        return [Spooled(row[0], Message(row[1], row[2], row[3])) for row in rows]

    def ack(self, up_to_id: int) -> None:
        """Forget every message with an id up to ``up_to_id``: the broker has them."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            count, size = self._db.execute(f"{_TALLY} WHERE id <= ?", (up_to_id,)).fetchone()
            self._db.execute("DELETE FROM outbox WHERE id <= ?", (up_to_id,))
            self._count -= count
            self._bytes -= size

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        """Bytes of keys and values waiting."""
        return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()
