"""A ClickHouse sink that writes every event exactly once, roll-ups included.

How it stays exact across crashes and replays:

1. Rows are inserted in batches, as the sink lane gathers them (by size or age).
   The lane commits the offsets that fed a batch only after the insert returned,
   so an offset is never committed for a row that is not stored.
2. Anything delivered again (a redelivery after a crash, a replayed file, a
   re-emitted ledger entry) is recognised by its key: before each insert the sink
   asks ClickHouse which keys of the batch it holds already and drops those.
3. An insert feeds materialized views, and a crash in the middle of one can
   leave a view without rows its source table has. Each batch is inserted with
   its id as deduplication token; at start the sink re-inserts its latest
   batches from the table itself under the same token, which fills in any view
   that missed them and is a no-op for the rest.

   The token only holds where the re-insert reaches the engine as the insert did:
   as one block, into one partition. So a batch is inserted one month (the tables'
   partition) at a time, and the re-insert is read as one block. (Measured on the
   engine, chdb 26.9: a batch spanning two months, or one whose part had been merged
   with others, was stored twice by the re-insert; a history backlog does both.)
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.exceptions import OperationalError
from tenacity import RetryCallState, retry, wait_exponential

from mallstream.failpoints import failpoint

from .arrow import arrow_table
from .warehouse import Warehouse

#: what the sink stores with every row: where in Kafka it came from, then the insert batch and its time
SOURCE_COLUMNS = ("_topic", "_partition", "_offset", "_batch", "_sunk_at")
POSITION_COLUMNS, STAMP_COLUMNS = SOURCE_COLUMNS[:3], SOURCE_COLUMNS[3:]


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


def sourced(row: Sequence[Any], source: SourcePosition) -> tuple[Any, ...]:
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
    """Writes batches of rows to one table, keyed by ``key_column`` (the row's first value).

    The batching itself is the sink lane's (streams/lanes.py): it hands over a batch,
    and commits its offsets only after :meth:`write` returned.
    """

    warehouse: Warehouse
    table: str
    columns: Sequence[str]
    worker_tag: str = "local"
    stats: SinkStats = field(default_factory=SinkStats)
    #: whether this sink's staging table is known to exist: created once, not before every batch
    _staging_ready: bool = False
    #: the column whose month partitions the table ("": none), asked at the first write
    _month_column: str | None = None

    @property
    def key_column(self) -> str:
        return self.columns[0]

    def write(self, rows: list[tuple[Any, ...]]) -> int:
        """Insert the rows ClickHouse does not hold yet, a block per month; return how many. Blocking.

        ``rows`` are :func:`sourced`: the table's values, then where in Kafka each came from.
        """
        if not rows:
            return 0
        started = time.perf_counter()
        written = self._write_fresh(rows)
        if written:
            failpoint(f"sink.after_insert.{self.table}")
        self.stats.batches += 1
        self.stats.rows_written += written
        self.stats.rows_skipped += len(rows) - written
        self.stats.seconds_inserting += time.perf_counter() - started
        return written

    @retry(stop=_give_up, wait=wait_exponential(multiplier=0.2, max=10), reraise=True)
    def _write_fresh(self, rows: list[tuple[Any, ...]]) -> int:
        """One attempt at the check-then-insert; retried as a whole, so a retry re-checks what landed."""
        try:
            # the table's types are asked on the first write, which may come while the server is away
            schema = self.warehouse.schema(self.table, (*self.columns, *POSITION_COLUMNS))
            keep = self._fresh(pa.chunked_array([pa.array([row[0] for row in rows], schema.field(0).type)]))
            months = self._by_month(rows if keep is None else list(itertools.compress(rows, keep)))
        except Exception:
            self._staging_ready = False  # a server that lost it (or a new one) gets it again at the retry
            raise
        stamp_columns = self.warehouse.schema(self.table, STAMP_COLUMNS)
        for month in months:
            block = arrow_table(month, schema)
            batch = f"{self.worker_tag}-{uuid.uuid4().hex}"
            for column, value in zip(stamp_columns, (batch, dt.datetime.now(dt.UTC)), strict=True):
                block = block.append_column(column, pa.repeat(pa.scalar(value, column.type), block.num_rows))
            self.warehouse.insert_block(self.table, block, token=batch)
        return sum(len(month) for month in months)

    def _fresh(self, key_column: pa.ChunkedArray) -> list[bool] | None:
        """Per row, whether its key is neither stored already nor earlier in the same batch (None: every row is).

        The batch's keys go to a small staging table and the engine joins them
        against the table's primary key: a big batch's keys as query parameters
        made the query text huge and, on chdb, the first such query took seconds.
        """
        staging = f"{self.table}__incoming_{_identifier(self.worker_tag)}"
        if not self._staging_ready:
            self.warehouse.command(f"CREATE TABLE IF NOT EXISTS {{db}}.{staging} (key String) ENGINE = Memory")
            self._staging_ready = True
        self.warehouse.command(f"TRUNCATE TABLE {{db}}.{staging}")
        self.warehouse.insert_block(staging, pa.table({"key": key_column}))
        _, stored = self.warehouse.query(
            f"SELECT {self.key_column} FROM {{db}}.{self.table} "
            f"WHERE {self.key_column} IN (SELECT key FROM {{db}}.{staging})"
        )
        seen = {row[0] for row in stored}
        keys = key_column.to_pylist()
        if not seen and len(set(keys)) == len(keys):
            return None
        fresh = []
        for key in keys:
            fresh.append(key not in seen)
            seen.add(key)
        return fresh

    def _by_month(self, rows: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
        """The rows split by the table's partition (``toYYYYMM`` of a UTC column), each part in the rows' order."""
        if self._month_column is None:
            self._month_column = _month_column(self.warehouse, self.table)
        if not self._month_column or not rows:
            return [rows] if rows else []
        at = self.columns.index(self._month_column)
        months: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
        for row in rows:
            moment = row[at]
            if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
                moment = moment.astimezone(dt.UTC)  # the tables' time columns are UTC: so are their months
            months.setdefault((moment.year, moment.month), []).append(row)
        return list(months.values())

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
            _, partitions = self.warehouse.query(
                f"SELECT DISTINCT _partition_id FROM {{db}}.{self.table} WHERE _batch = {{batch:String}}",
                {"batch": batch},
            )
            for (partition,) in partitions:  # one, but for batches stored before they were split by month
                self.warehouse.command(
                    f"INSERT INTO {{db}}.{self.table} SELECT * FROM {{db}}.{self.table} "
                    f"WHERE _batch = '{batch}' AND _partition_id = '{partition}'",
                    settings={"insert_deduplication_token": batch, **REINSERT_AS_ONE_BLOCK},
                )
        return batches


#: Settings that make ``INSERT ... SELECT`` reach the table as one block, as the batch's own insert did.
REINSERT_AS_ONE_BLOCK = {
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "max_threads": 1,
    "max_block_size": 1 << 30,
    "preferred_block_size_bytes": 1 << 40,
    "min_insert_block_size_rows": 1 << 30,
    "min_insert_block_size_bytes": 1 << 40,
}

_MONTHLY = re.compile(r"^toYYYYMM\((\w+)\)$")


def _month_column(warehouse: Warehouse, table: str) -> str:
    """The column the table is partitioned by month on; empty when it is not partitioned."""
    _, rows = warehouse.query(
        "SELECT partition_key FROM system.tables WHERE database = {database:String} AND name = {table:String}",
        {"database": warehouse.database, "table": table},
    )
    key = rows[0][0] if rows else ""
    monthly = _MONTHLY.match(key)
    if key and monthly is None:
        raise ValueError(f"table {table}: partition key {key!r}: the sink splits batches by toYYYYMM(column) only")
    return monthly.group(1) if monthly else ""
