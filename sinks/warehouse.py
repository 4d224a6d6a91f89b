"""The connection to ClickHouse, embedded (chdb) or a server, behind one lock.

Only one process may open a chdb directory, so the worker owns it and answers
``mallstream sql`` for others while it runs (see ``streams/web.py``). With a
server, every process connects on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from mallstream.settings import ClickHouse

from .arrow import arrow_schema, arrow_table
from .migrations import apply_migrations


class Warehouse:
    """A ClickHouse client safe to share between the event loop's worker threads."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.database = database
        #: column name -> ClickHouse type, per table inserted into
        self._types: dict[str, dict[str, str]] = {}

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query; ``{db}`` in the text is the hub's database."""
        with self._lock:
            result = self._client.query(sql.replace("{db}", self.database), parameters=parameters)
        # clickhouse_connect types result_rows as Sequence[Sequence[Any]]; its rows are a list of tuples
        return list(result.column_names), cast(list[tuple[Any, ...]], result.result_rows)

    def raw(self, sql: str, fmt: str, read_only: dict[str, str] | None = None) -> bytes:
        """The query's result in a ClickHouse output format (TSV, JSON...), as the engine wrote it.

        ``read_only`` (output settings, may be empty), for queries that come from outside the hub: the engine
        refuses writes, other setting changes and table functions (``file()``, ``url()``). The settings are the
        query's own ``SETTINGS`` clause, on a line of its own after any trailing comment, ``readonly`` last, so
        they cannot leak into the engine's session; a query that has a clause of its own is a syntax error.
        """
        if read_only is not None:
            clause = [f"{name} = {value}" for name, value in read_only.items()] + ["readonly = 1"]
            sql = sql.rstrip().rstrip(";") + "\nSETTINGS " + ", ".join(clause)
        with self._lock:
            return self._client.raw_query(sql.replace("{db}", self.database), fmt=fmt)

    def command(self, sql: str, settings: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._client.command(sql.replace("{db}", self.database), settings=settings)

    def insert(
        self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], token: str | None = None
    ) -> None:
        """Insert rows as one block; with a ``token``, a repeat of the same block is a no-op, views included."""
        self.insert_block(table, arrow_table(rows, self.schema(table, columns)), token)

    def insert_block(self, table: str, block: pa.Table, token: str | None = None) -> None:
        """Insert an Arrow table as one block (its column names are the table's); ``token`` as for :meth:`insert`."""
        settings = {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}
        with self._lock:
            self._client.insert_arrow(f"{self.database}.{table}", block, settings=settings if token else None)

    def schema(self, table: str, columns: Sequence[str]) -> pa.Schema:
        """The Arrow schema of some of the table's columns, from its types (asked once per table)."""
        if table not in self._types:
            _, described = self.query(f"DESCRIBE TABLE {{db}}.{table}")
            self._types[table] = {row[0]: row[1] for row in described}
        types = self._types[table]
        return arrow_schema([(column, types[column]) for column in columns])

    def migrate(self) -> list[int]:
        """Create or upgrade the schema; return the migration versions applied now."""
        return apply_migrations(self)

    def close(self) -> None:
        with self._lock:
            self._client.close()


def open_warehouse(config: ClickHouse) -> Warehouse:
    """Open ClickHouse as the config says; embedded takes the chdb directory's lock."""
    if config.mode == "embedded":
        path = config.path
        path.mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}")
    else:
        client = clickhouse_connect.get_client(
            host=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            secure=config.secure,
            verify=config.verify,
            ca_cert=str(config.ca_file) if config.ca_file else None,
        )
    return Warehouse(client, config.database)
