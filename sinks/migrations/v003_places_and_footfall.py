"""Version 3: where each device is, and people-counter totals by minute and hour."""

from __future__ import annotations

from .base import DEDUP, Migration

MIGRATION = Migration(
    3,
    "places of the devices; footfall per counter by minute (kept 90 days) and by hour (kept)",
    [
        # Written from the config at every worker start; the latest version of a device wins.
        """CREATE TABLE IF NOT EXISTS {db}.places (
            mall_id LowCardinality(String),
            device_id String,
            device_kind LowCardinality(String),
            place_id String,
            place_kind LowCardinality(String),
            floor LowCardinality(String),
            area_m2 Nullable(Float64),
            excludes_staff Bool,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (mall_id, device_id)""",
        # A tick counts the interval that ends at ts: it is filed under the minute that interval starts.
        f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_minute (
            mall_id LowCardinality(String),
            counter_id LowCardinality(String),
            minute DateTime('UTC'),
            count_in UInt64,
            count_out UInt64,
            ticks UInt64
        ) ENGINE = SummingMergeTree ORDER BY (mall_id, counter_id, minute)
          TTL minute + INTERVAL 90 DAY {DEDUP}""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.footfall_minute_mv TO {db}.footfall_minute AS
           SELECT mall_id, counter_id, toStartOfMinute(ts - toIntervalSecond(interval_s)) AS minute,
                  sum(count_in) AS count_in, sum(count_out) AS count_out, count() AS ticks
           FROM {db}.footfall_ticks GROUP BY mall_id, counter_id, minute""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_hourly (
            mall_id LowCardinality(String),
            counter_id LowCardinality(String),
            hour DateTime('UTC'),
            count_in UInt64,
            count_out UInt64,
            ticks UInt64
        ) ENGINE = SummingMergeTree ORDER BY (mall_id, counter_id, hour) {DEDUP}""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.footfall_hourly_mv TO {db}.footfall_hourly AS
           SELECT mall_id, counter_id, toStartOfHour(ts - toIntervalSecond(interval_s)) AS hour,
                  sum(count_in) AS count_in, sum(count_out) AS count_out, count() AS ticks
           FROM {db}.footfall_ticks GROUP BY mall_id, counter_id, hour""",
    ],
)
