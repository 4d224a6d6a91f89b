"""A lane's state: per store and partition, a dict in memory, a local file, and a changelog topic.

The dict is what the steps read and write, at memory speed. What they write in a batch is
kept twice until the batch's checkpoint (streams/state/checkpoint.py): once for the changelog
(the last value per key: a key written a hundred times in a batch costs one record), once for
the local file. The local file (SQLite, one per partition) remembers the state across restarts
with the changelog offset it holds up to, so a restart reads only the changelog's tail, and
the retention keeper may trim the changelog up to that offset. Without the file (a new disk,
a store lost), the state comes back from the whole changelog.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ..topics import partition_of

#: A key's value, or None once deleted (a tombstone on the changelog).
Value = bytes | None


class PartitionStore:
    """One store's keys of one partition: a mapping of bytes, with what changed since the last checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[bytes, bytes] = {}
        #: written by the steps since the last checkpoint: for the changelog
        self.changed: dict[bytes, Value] = {}
        #: applied since the file was last written (the steps' writes and what a restore read): for the file
        self.unsaved: dict[bytes, Value] = {}
        #: the changelog offset the state holds up to (the next record to apply), and the one the file holds up to
        self.applied = 0
        self.saved = 0
        self._db: sqlite3.Connection | None = None

    # -- the mapping the steps use ------------------------------------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self.data.get(key, default)

    def __getitem__(self, key: bytes) -> bytes:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self.changed[key] = self.unsaved[key] = value

    def __delitem__(self, key: bytes) -> None:
        if self.data.pop(key, None) is not None:
            self.changed[key] = self.unsaved[key] = None

    def keys(self) -> list[bytes]:
        return list(self.data)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys())  # a copy: a step may write while it walks the keys

    def items(self) -> list[tuple[bytes, bytes]]:
        return list(self.data.items())

    # -- restore and checkpoint ---------------------------------------------------------

    def open(self) -> None:
        """Read the local file, if any: the state and the changelog offset it holds up to."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        db.execute("CREATE TABLE IF NOT EXISTS applied (one INTEGER PRIMARY KEY CHECK (one = 1), next INTEGER)")
        self.data = dict(db.execute("SELECT key, value FROM kv"))
        found = db.execute("SELECT next FROM applied").fetchone()
        self.applied = self.saved = found[0] if found else 0

    def forget_local(self) -> None:
        """The file is of no use (its offset is past the changelog's end): start empty, from the changelog."""
        assert self._db is not None
        self.data.clear()
        self.unsaved.clear()
        self.applied = self.saved = 0
        self._db.execute("DELETE FROM kv")

    def apply(self, key: bytes, value: Value, offset: int) -> None:
        """A changelog record read back: into memory, and into the file at the next :meth:`save`."""
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        self.unsaved[key] = value
        self.applied = offset + 1

    def take_changed(self) -> dict[bytes, Value]:
        """What the changelog is to receive for this checkpoint; the store starts a new one."""
        changed, self.changed = self.changed, {}
        return changed

    def save(self, applied: int | None = None) -> None:
        """Write what changed to the file, with the changelog offset the state now holds up to, in one transaction."""
        assert self._db is not None
        if applied is not None:
            self.applied = max(self.applied, applied)
        unsaved, self.unsaved = self.unsaved, {}
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO kv VALUES (?, ?)",
                ((key, value) for key, value in unsaved.items() if value is not None),
            )
            db.executemany("DELETE FROM kv WHERE key = ?", ((key,) for key, value in unsaved.items() if value is None))
            db.execute("INSERT OR REPLACE INTO applied VALUES (1, ?)", (self.applied,))
            db.execute("COMMIT")
            self.saved = self.applied
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None


class LaneStore:
    """One named store of a lane over the partitions this worker holds; a key lives in the partition it came on."""

    def __init__(self, name: str, changelog: str, directory: Path, partition_count: int) -> None:
        self.name = name
        self.partition_count = partition_count
        #: the changelog topic, partitioned as the lane's input topics
        self.changelog = changelog
        self.directory = directory
        self.partitions: dict[int, PartitionStore] = {}

    def partition(self, partition: int) -> PartitionStore:
        """The store of a partition this worker holds (KeyError for one it does not)."""
        return self.partitions[partition]

    def get(self, key: bytes) -> bytes | None:
        """A key's value, if this worker holds its partition (for views, which know no partition)."""
        held = self.partitions.get(partition_of(key, self.partition_count))
        return held.get(key) if held is not None else None

    def held(self) -> Iterator[tuple[int, PartitionStore]]:
        yield from list(self.partitions.items())

    def opened(self, partition: int) -> PartitionStore:
        """The partition's store, opened from its local file (restored from the changelog by the lane)."""
        store = PartitionStore(self.directory / self.name / f"{partition}.sqlite3")
        store.open()
        self.partitions[partition] = store
        return store

    def drop(self, partition: int) -> None:
        """The partition moved away: its memory goes, its file stays (a later assignment reads only the tail)."""
        store = self.partitions.pop(partition, None)
        if store is not None:
            store.close()
