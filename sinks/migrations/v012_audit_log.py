"""Version 12: the audit log of operations done by hand."""

from __future__ import annotations

from .base import DEDUP, SINK_COLUMNS, Migration

MIGRATION = Migration(
    12,
    "audit log: manual operations, schedule runs by hand and rule-file changes, with who, what, when and why",
    [
        # kept as long as the ledger it explains: no TTL
        f"""CREATE TABLE IF NOT EXISTS {{db}}.audit_log (
            audit_id String,
            kind LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            who String,
            actor String,
            what String,
            why String,
            outcome String,
            mall_id LowCardinality(String),
            member_id Nullable(String),
            subject String,
            detail String,{SINK_COLUMNS}
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (ts, audit_id) {DEDUP}""",
    ],
)
