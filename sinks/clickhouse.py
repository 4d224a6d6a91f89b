"""A ClickHouse sink that writes every event exactly once, roll-ups included.

How it stays exact across crashes and replays:

1. Rows are buffered and inserted in batches, by size or age. The Kafka messages
   that fed a batch are acknowledged only after the insert returned, so an
   offset is never committed for a row that is not stored.
2. Anything delivered again (a redelivery after a crash, a replayed file, a
   re-emitted ledger entry) is recognised by its key: before each insert the sink
   asks ClickHouse which keys of the batch it holds already and drops those.
3. An insert feeds materialized views, and a crash in the middle of one can
   leave a view without rows its source table has. Each batch is inserted with
   its id as deduplication token; at start the sink re-inserts its latest
   batches from the table itself under the same token, which fills in any view
   that missed them and is a no-op for the rest.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError
from tenacity import RetryCallState, retry, wait_exponential

from mallstream.failpoints import failpoint

from .warehouse import Warehouse

SOURCE_COLUMNS = ("_topic", "_partition", "_offset", "_batch", "_sunk_at")


def _identifier(text: str) -> str:
    """``text`` made safe as part of a table name."""
    return re.sub(r"\W", "_", text)


@dataclass(frozen=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


def _give_up(attempt: RetryCallState) -> bool:
    """Wait out an unreachable server however long it takes (the batch's offsets are held meanwhile);
    give up on any other error after a few attempts, so a bad batch stops the worker loudly."""
    unreachable = isinstance(attempt.outcome.exception(), OperationalError) if attempt.outcome else False
    return attempt.attempt_number >= 6 and not unreachable


def sourced(row: Sequence[Any], source: SourcePosition) -> tuple:
    """A row as the sink writes it: its values, then where in Kafka it came from."""
    return (*row, source.topic, source.partition, source.offset)


@dataclass
class SinkStats:
    batches: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    seconds_inserting: float = 0.0


@dataclass
class TableSink:
    """Batches rows for one table, keyed by ``key_column`` (the row's first value)."""

    warehouse: Warehouse
    table: str
    columns: Sequence[str]
    batch_rows: int = 5000
    flush_seconds: float = 1.0
    worker_tag: str = "local"
    stats: SinkStats = field(default_factory=SinkStats)
    _rows: list[tuple] = field(default_factory=list)
    _acks: list[Callable[[], Any]] = field(default_factory=list)
    _oldest: float | None = None
    #: whether this sink's staging table is known to exist: created once, not before every batch
    _staging_ready: bool = False

    @property
    def key_column(self) -> str:
        return self.columns[0]

    def add(self, row: Sequence[Any], source: SourcePosition, ack: Callable[[], Any]) -> None:
        """Buffer one row; ``ack`` runs once the row is stored (or known to be stored already)."""
        self._rows.append(sourced(row, source))
        self._acks.append(ack)
        if self._oldest is None:
            self._oldest = time.monotonic()

    @property
    def due(self) -> bool:
        """Full, or holding rows older than ``flush_seconds``."""
        if not self._rows:
            return False
        return len(self._rows) >= self.batch_rows or time.monotonic() - (self._oldest or 0) >= self.flush_seconds

    def take(self) -> tuple[list[tuple], list[Callable[[], Any]]]:
        """Hand over what is buffered: the rows to write and the acks to run once written."""
        rows, acks = self._rows, self._acks
        self._rows, self._acks, self._oldest = [], [], None
        return rows, acks

    def write(self, rows: list[tuple]) -> int:
        """Insert the rows ClickHouse does not hold yet, as one block; return how many. Blocking."""
        if not rows:
            return 0
        started = time.perf_counter()
        fresh = self._write_fresh(rows)
        failpoint("sink.after_insert")
        self.stats.batches += 1
        self.stats.rows_written += len(fresh)
        self.stats.rows_skipped += len(rows) - len(fresh)
        self.stats.seconds_inserting += time.perf_counter() - started
        return len(fresh)

    @retry(stop=_give_up, wait=wait_exponential(multiplier=0.2, max=10), reraise=True)
    def _write_fresh(self, rows: list[tuple]) -> list[tuple]:
        """One attempt at the check-then-insert; retried as a whole, so a retry re-checks what landed."""
        try:
            fresh = self._drop_known(rows)
        except Exception:
            self._staging_ready = False  # a server that lost it (or a new one) gets it again at the retry
            raise
        if fresh:
            batch = f"{self.worker_tag}-{uuid.uuid4().hex}"
            now = dt.datetime.now(dt.UTC)
            self.warehouse.insert(
                self.table,
                [(*row, batch, now) for row in fresh],
                (*self.columns, *SOURCE_COLUMNS),
                token=batch,
            )
        return fresh

    def flush(self) -> int:
        """Write what is buffered, then acknowledge it; return the rows written."""
        rows, acks = self.take()
        written = self.write(rows)
        for ack in acks:
            ack()
        return written

    def _drop_known(self, rows: list[tuple]) -> list[tuple]:
        """Rows whose key is neither stored already nor earlier in the same batch.

        The batch's keys go to a small staging table and the engine joins them
        against the table's primary key: a big batch's keys as query parameters
        made the query text huge and, on chdb, the first such query took seconds.
        """
        staging = f"{self.table}__incoming_{_identifier(self.worker_tag)}"
        if not self._staging_ready:
            self.warehouse.command(f"CREATE TABLE IF NOT EXISTS {{db}}.{staging} (key String) ENGINE = Memory")
            self._staging_ready = True
        self.warehouse.command(f"TRUNCATE TABLE {{db}}.{staging}")
        self.warehouse.insert_plain(staging, [(row[0],) for row in rows], ("key",))
        _, stored = self.warehouse.query(
            f"SELECT {self.key_column} FROM {{db}}.{self.table} "
            f"WHERE {self.key_column} IN (SELECT key FROM {{db}}.{staging})"
        )
        seen = {row[0] for row in stored}
        fresh = []
        for row in rows:
            if row[0] not in seen:
                seen.add(row[0])
                fresh.append(row)
        return fresh

    def repair(self, last_batches: int = 3) -> list[str]:
        """Re-insert every worker's latest batches under their own tokens, so views that missed them catch up.

        Per worker, because on a shared server other workers' newer batches must not
        hide the one a crashed worker left half-written; repeating a complete batch is a no-op.
        """
        _, rows = self.warehouse.query(
            f"SELECT _batch FROM {{db}}.{self.table} GROUP BY _batch ORDER BY max(_sunk_at) DESC "
            f"LIMIT {last_batches} BY replaceRegexpOne(_batch, '-[0-9a-f]{{32}}$', '')"
        )
        batches = [row[0] for row in rows]
        for batch in batches:
            self.warehouse.command(
                f"INSERT INTO {{db}}.{self.table} SELECT * FROM {{db}}.{self.table} WHERE _batch = '{batch}'",
                settings={"insert_deduplication_token": batch, "deduplicate_blocks_in_dependent_materialized_views": 1},
            )
        return batches
