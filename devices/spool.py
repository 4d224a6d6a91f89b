"""A durable FIFO of messages on their way to Kafka, so a broker outage or a gateway restart loses nothing.

SQLite in WAL mode holds the queue. :meth:`Spool.append` returns only once its messages are
committed with a full sync, so a message the gateway accepted survives a SIGKILL (and, with
``synchronous=FULL``, a power cut). Messages leave in id order and only when :meth:`Spool.ack`
says the broker has them. The spool is bounded: an append that would exceed ``max_bytes`` is
refused whole with :class:`SpoolFull`, never dropped in silence.

Appended messages can be peeked at once, before they are durable: the publisher sends them
while the disk syncs. (Under the embedded broker's file saves a sync took up to 80 ms, and a
VIP card read waited for its own and the busy readers' syncs before the publisher could see
it.) A message the broker has before its commit is sent again after a crash at most, as any
unacknowledged one is. Each commit takes whatever was appended or acknowledged since the last
(group commit): an append commits itself unless a commit running meanwhile took it along,
and a thread of its own deletes what the broker acknowledged, so the publisher never waits
for the disk.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections import deque
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
#: Acknowledged messages not taken along by an append's commit are deleted this often.
DELETE_EVERY_S = 0.1
#: The highest id the outbox ever gave, deleted or not.
_LAST_ID = "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'outbox'"


class SpoolFull(RuntimeError):
    """The spool holds ``max_bytes`` already: the broker has been away too long for the disk budget."""


class SpoolClosed(RuntimeError):
    """The spool was closed, or its file failed, before an append was committed."""


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


def _connect(path: Path) -> sqlite3.Connection:
    # a commit that finds the file locked waits for it (a checkpoint, a backup tool) rather than fail the
    # spool after sqlite3's default 5 s: a failed commit cannot be taken back from the publisher
    db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Spool:
    """The queue file; safe to share between threads.

    ``memory_bytes`` bounds the recent messages also kept in memory, for peeking before they
    are durable; older ones (a long outage's backlog) are read back from the file.
    """

    def __init__(self, path: Path | str, max_bytes: int = 1 << 30, memory_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.path)
        self._db.execute(_SCHEMA)
        self._reader = _connect(self.path)  # WAL: the publisher reads the backlog while the writer commits
        count, size = self._db.execute(_TALLY).fetchone()
        self._count, self._bytes = count, size
        self._next_id = self._db.execute(_LAST_ID).fetchone()[0] + 1
        #: Messages refused because the spool was full, since this process opened it.
        self.refused = 0
        #: Set whenever appended messages can be peeked (before they are durable).
        self.appended = threading.Event()
        self._changed = threading.Condition()  # guards the memory side below
        self._committing = threading.Lock()  # guards the file: one commit at a time
        self._recent: deque[Spooled] = deque()  # appended here and not acknowledged, ids without gaps
        self._recent_bytes = 0
        self._uncommitted: list[Spooled] = []
        self._committed_id = self._next_id - 1
        self._ack_id = self._acked_id = 0
        self._failure: BaseException | None = None
        self._closing = False
        self._deleter = threading.Thread(target=self._delete_acknowledged, name="spool-deleter", daemon=True)
        self._deleter.start()

    def append(self, messages: Sequence[Message]) -> None:
        """Queue ``messages`` after everything already queued and return once they are committed.

        SpoolFull if they do not fit; SpoolClosed if the spool closed or its file failed first.
        """
        size = sum(message.size for message in messages)
        with self._changed:
            self._raise_if_failed()
            if self._closing:
                raise SpoolClosed(f"spool {self.path} is closed")
            if self._bytes + size > self.max_bytes:
                self.refused += len(messages)
                raise SpoolFull(
                    f"spool {self.path} holds {self._bytes} bytes; {len(messages)} messages ({size} bytes) "
                    f"would pass its limit of {self.max_bytes} bytes"
                )
            spooled = [Spooled(self._next_id + n, message) for n, message in enumerate(messages)]
            if not spooled:
                return
            self._next_id += len(spooled)
            self._uncommitted.extend(spooled)
            self._recent.extend(spooled)
            self._recent_bytes += size
            self._count += len(spooled)
            self._bytes += size
            self.appended.set()
        with self._committing:
            if self._committed_id < spooled[-1].id:  # else a commit that ran meanwhile took them along
                self._commit_round()

    def peek(self, limit: int, after: int = 0) -> list[Spooled]:
        """The oldest ``limit`` messages with ids above ``after``, oldest first, left in place until acknowledged."""
        with self._changed:
            first_recent = self._recent[0].id if self._recent else self._next_id
            if after + 1 >= first_recent:
                start = after + 1 - first_recent
                return list(itertools.islice(self._recent, start, start + limit))
        # older than the recent ones in memory, so committed: the backlog of an outage or an earlier process
        rows = self._reader.execute(
            "SELECT id, topic, key, value FROM outbox WHERE id > ? AND id < ? ORDER BY id LIMIT ?",
            (after, first_recent, limit),
        ).fetchall()
        if not rows:  # nothing older is left: the recent ones follow
            return self.peek(limit, after=first_recent - 1)
        return [Spooled(row[0], Message(row[1], row[2], row[3])) for row in rows]

    def ack(self, up_to_id: int) -> None:
        """Forget every message with an id up to ``up_to_id``: the broker has them. Deleted at the next commit."""
        with self._changed:
            self._ack_id = max(self._ack_id, up_to_id)
            while self._recent and self._recent[0].id <= up_to_id:
                self._recent_bytes -= self._recent.popleft().message.size
            self._changed.notify_all()

    def __len__(self) -> int:
        """Messages appended and not yet deleted after their acknowledgement."""
        return self._count

    @property
    def bytes(self) -> int:
        """Bytes of keys and values waiting."""
        return self._bytes

    def close(self) -> None:
        """Commit what was appended and acknowledged, then close the file."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._deleter.join()
        with self._committing, contextlib.suppress(SpoolClosed):  # a failed spool has nothing left to commit
            self._commit_round()
        self._db.close()
        self._reader.close()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise SpoolClosed(f"spool {self.path} failed: {self._failure}") from self._failure

    def _delete_acknowledged(self) -> None:
        """The deleter thread: once the broker acknowledged more, delete it from the file, at most every
        ``DELETE_EVERY_S``: appends take acknowledgements along in their commits, so under load this
        adds few syncs, and when the devices fall quiet the file still empties."""
        while True:
            with self._changed:
                while not (self._ack_id > self._acked_id or self._closing):
                    self._changed.wait()
                if self._changed.wait_for(lambda: self._closing, DELETE_EVERY_S):
                    return
            with self._committing:
                try:
                    self._commit_round()
                except SpoolClosed:
                    return

    def _commit_round(self) -> None:
        """Commit what was appended and acknowledged since the last round; the caller holds ``_committing``.

        A failed commit fails the spool: its messages were handed out already and cannot be taken back.
        """
        with self._changed:
            self._raise_if_failed()
            appended, self._uncommitted = self._uncommitted, []
            ack_id = self._ack_id
        if not appended and ack_id <= self._acked_id:
            return
        try:
            count, size = self._commit(appended, ack_id)
        except BaseException as exc:
            with self._changed:
                self._failure = exc
            raise SpoolClosed(f"spool {self.path} failed: {exc}") from exc
        with self._changed:
            if appended:
                self._committed_id = appended[-1].id
            self._acked_id = ack_id
            self._count -= count
            self._bytes -= size
            self._forget_durable_beyond_memory()

    def _commit(self, appended: list[Spooled], ack_id: int) -> tuple[int, int]:
        """Insert ``appended`` and delete up to ``ack_id``, durably; how many messages and bytes were deleted."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox (id, topic, key, value) VALUES (?, ?, ?, ?)",
                [(s.id, s.message.topic, s.message.key, s.message.value) for s in appended],
            )
            count, size = self._db.execute(f"{_TALLY} WHERE id <= ?", (ack_id,)).fetchone()
            self._db.execute("DELETE FROM outbox WHERE id <= ?", (ack_id,))
        return count, size

    def _forget_durable_beyond_memory(self) -> None:
        """Past ``memory_bytes``, drop the oldest recent messages that are committed: peek reads them back."""
        while self._recent_bytes > self.memory_bytes and self._recent and self._recent[0].id <= self._committed_id:
            self._recent_bytes -= self._recent.popleft().message.size
