"""Version 5: the footfall agent's visitors, area occupancy and day reconciliation; parking stays and occupancy."""

from __future__ import annotations

from .base import DEDUP, SINK_COLUMNS, Migration

#: Visitor roll-ups: (grain, time column, its type, retention). Minute rows go after 90 days; hours and days stay.
_VISITOR_GRAINS = (
    ("minute", "minute", "DateTime('UTC')", "TTL minute + INTERVAL 90 DAY"),
    ("hourly", "hour", "DateTime('UTC')", ""),
    ("daily", "day", "Date", ""),
)

MIGRATION = Migration(
    5,
    "visitors (staff deducted) per level by minute (kept 90 days), hour and day; occupancy, dwell and "
    "drift per area; parking stays and occupancy",
    [
        # Rows of the footfall agent; a late row adds to its interval, so everything downstream sums.
        f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_rollups (
            row_id String,
            mall_id LowCardinality(String),
            level LowCardinality(String),
            key String,
            start DateTime('UTC'),
            local_day Date,
            interval_s UInt32,
            visitors_in Int64,
            visitors_out Int64,
            staff_in Int64,
            staff_out Int64,
            transactions Int64,
            passers_by Int64,
            late Bool,{SINK_COLUMNS},
            INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(start) ORDER BY (mall_id, level, key, start)
          TTL start + INTERVAL 90 DAY {DEDUP}""",
        *(
            f"""CREATE TABLE IF NOT EXISTS {{db}}.visitors_{grain} (
            mall_id LowCardinality(String),
            level LowCardinality(String),
            key String,
            {moment} {moment_type},
            visitors_in Int64,
            visitors_out Int64,
            staff_in Int64,
            staff_out Int64,
            transactions Int64,
            passers_by Int64,
            late_rows UInt64
        ) ENGINE = SummingMergeTree ORDER BY (mall_id, level, key, {moment}) {ttl} {DEDUP}"""
            for grain, moment, moment_type, ttl in _VISITOR_GRAINS
        ),
        *(
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.visitors_{grain}_mv TO {{db}}.visitors_{grain} AS
           SELECT mall_id, level, key, {expression} AS {moment},
                  sum(visitors_in) AS visitors_in, sum(visitors_out) AS visitors_out, sum(staff_in) AS staff_in,
                  sum(staff_out) AS staff_out, sum(transactions) AS transactions,
                  sum(passers_by) AS passers_by, countIf(late) AS late_rows
           FROM {{db}}.footfall_rollups GROUP BY mall_id, level, key, {moment}"""
            for (grain, moment, _, _), expression in zip(
                _VISITOR_GRAINS, ("start", "toStartOfHour(start)", "local_day"), strict=True
            )
        ),
        f"""CREATE TABLE IF NOT EXISTS {{db}}.area_occupancy (
            row_id String,
            mall_id LowCardinality(String),
            level LowCardinality(String),
            key String,
            start DateTime('UTC'),
            interval_s UInt32,
            occupancy Int64,
            occupancy_uncorrected Int64,
            density Nullable(Float64),
            departures Float64,
            dwell_s Nullable(Float64),{SINK_COLUMNS},
            INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(start) ORDER BY (mall_id, level, key, start)
          TTL start + INTERVAL 90 DAY {DEDUP}""",
        # Occupancy and dwell by hour outlive the minute rows: mean = occupancy_sum / samples.
        f"""CREATE TABLE IF NOT EXISTS {{db}}.area_occupancy_hourly (
            mall_id LowCardinality(String),
            level LowCardinality(String),
            key String,
            hour DateTime('UTC'),
            occupancy_sum Int64,
            samples UInt64,
            occupancy_peak SimpleAggregateFunction(max, Int64),
            departures Float64,
            dwell_seconds Float64
        ) ENGINE = SummingMergeTree ORDER BY (mall_id, level, key, hour) {DEDUP}""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.area_occupancy_hourly_mv TO {db}.area_occupancy_hourly AS
           SELECT mall_id, level, key, toStartOfHour(start) AS hour, sum(occupancy) AS occupancy_sum,
                  count() AS samples, max(occupancy) AS occupancy_peak, sum(departed) AS departures,
                  sum(departed * ifNull(dwell_s, 0)) AS dwell_seconds
           FROM (SELECT *, departures AS departed FROM {db}.area_occupancy)
           GROUP BY mall_id, level, key, hour""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.area_days (
            row_id String,
            mall_id LowCardinality(String),
            level LowCardinality(String),
            key String,
            closed_at DateTime('UTC'),
            local_day Date,
            visitors_in Int64,
            visitors_out_counted Int64,
            residual Float64,
            exit_scale_used Float64,
            exit_scale_next Float64,
            dwell_littles_s Nullable(Float64),
            dwell_matched_s Nullable(Float64),{SINK_COLUMNS}
        ) ENGINE = MergeTree ORDER BY (mall_id, level, key, closed_at) {DEDUP}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_stays (
            row_id String,
            mall_id LowCardinality(String),
            car_park_id LowCardinality(String),
            plate String,
            entry Nullable(DateTime64(3, 'UTC')),
            exit DateTime64(3, 'UTC'),
            exit_gate LowCardinality(String),
            duration_s Nullable(Float64),
            fee Nullable(Decimal(12, 2)),{SINK_COLUMNS},
            INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(exit) ORDER BY (mall_id, car_park_id, exit) {DEDUP}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_occupancy (
            event_id String,
            mall_id LowCardinality(String),
            car_park_id LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            occupancy UInt32,
            capacity UInt32,{SINK_COLUMNS},
            INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, car_park_id, ts)
          TTL toDateTime(ts) + INTERVAL 90 DAY {DEDUP}""",
    ],
)
