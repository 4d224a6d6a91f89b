"""Version 1: the member ledger as the loyalty agent writes it, points by day, and input that was refused."""

from __future__ import annotations

from .base import DEDUP, SINK_COLUMNS, Migration

MIGRATION = Migration(
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
)
