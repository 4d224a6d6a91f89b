"""ClickHouse tables and materialized views, as ordered migrations.

Each sunk table carries where its rows came from (``_topic``, ``_partition``,
``_offset``) and the insert batch that wrote them (``_batch``), which is also the
insert-deduplication token: re-running a batch after a crash mid-insert fills in
a view that missed it, and changes nothing that already has it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mallstream.streams.records import DeadLetter, LedgerEntry


@dataclass(frozen=True)
class SinkTable:
    """A table fed by a sink: its name, its columns (the first is the row's key), and the record mapping."""

    name: str
    columns: Sequence[str]
    row: Callable[[Any], tuple]


def _ledger_row(entry: LedgerEntry) -> tuple:
    return (
        entry.entry_id, entry.mall_id, entry.member_id, entry.account, entry.delta, entry.balance_after,
        entry.cause, entry.txn_id, entry.store_id, entry.ts, entry.business_day,
    )


def _dead_letter_row(letter: DeadLetter) -> tuple:
    return (letter.dead_letter_id, letter.source, letter.reason, letter.payload, letter.ts)


LEDGER_TABLE = SinkTable(
    "ledger_entries",
    ("entry_id", "mall_id", "member_id", "account", "delta", "balance_after",
     "cause", "txn_id", "store_id", "ts", "business_day"),
    _ledger_row,
)
DEAD_LETTERS_TABLE = SinkTable(
    "dead_letters", ("dead_letter_id", "source", "reason", "payload", "ts"), _dead_letter_row
)

#: Kept on every table that takes sink inserts or view inserts, so a repeated
#: batch token is recognised (ClickHouse keeps that many recent block hashes).
DEDUP = "SETTINGS non_replicated_deduplication_window = 1000"

SINK_COLUMNS = """
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64,
    _batch String,
    _sunk_at DateTime64(3, 'UTC')"""

#: (version, description, statements). ``{db}`` is the configured database. Append only.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "member ledger, daily points roll-up, dead letters",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.ledger_entries (
                entry_id String,
                mall_id LowCardinality(String),
                member_id String,
                account LowCardinality(String),
                delta Int64,
                balance_after Int64,
                cause LowCardinality(String),
                txn_id String,
                store_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                business_day Date,{SINK_COLUMNS}
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(business_day) ORDER BY entry_id {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.points_daily (
                mall_id LowCardinality(String),
                business_day Date,
                store_id LowCardinality(String),
                account LowCardinality(String),
                earned Int64,
                reversed Int64,
                entries UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, business_day, store_id, account) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.points_daily_mv TO {db}.points_daily AS
               SELECT mall_id, business_day, store_id, account,
                      sumIf(delta, delta > 0) AS earned, sumIf(-delta, delta < 0) AS reversed, count() AS entries
               FROM {db}.ledger_entries GROUP BY mall_id, business_day, store_id, account""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.dead_letters (
                dead_letter_id String,
                source String,
                reason String,
                payload String,
                ts DateTime64(3, 'UTC'),{SINK_COLUMNS}
            ) ENGINE = MergeTree ORDER BY dead_letter_id {DEDUP}""",
        ],
    ),
]
