"""Version 4: VIP visits and the alerts delivered about members."""

from __future__ import annotations

from .base import DEDUP, SINK_COLUMNS, Migration

MIGRATION = Migration(
    4,
    "VIP visits (latest amendment wins) and delivered alerts with their latency",
    [
        f"""CREATE TABLE IF NOT EXISTS {{db}}.vip_visits (
            row_id String,
            visit_id String,
            mall_id LowCardinality(String),
            member_id String,
            tier LowCardinality(String),
            visit_number UInt32,
            arrived DateTime64(3, 'UTC'),
            left DateTime64(3, 'UTC'),
            path_places Array(String),
            path_arrived Array(DateTime64(3, 'UTC')),
            path_dwell_s Array(Float64),
            zone_dwell_s Map(String, Float64),
            reads UInt32,
            spend_cents Int64,
            txn_ids Array(String),
            version UInt32,{SINK_COLUMNS}
        ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(arrived) ORDER BY (mall_id, visit_id)
          {DEDUP}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.alerts (
            alert_id String,
            mall_id LowCardinality(String),
            kind LowCardinality(String),
            severity LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            decided_at Nullable(DateTime64(3, 'UTC')),
            published_at Nullable(DateTime64(3, 'UTC')),
            member_id Nullable(String),
            tier LowCardinality(Nullable(String)),
            zone_id Nullable(String),
            visit_id Nullable(String),
            message String,{SINK_COLUMNS}
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, ts, alert_id) {DEDUP}""",
    ],
)
