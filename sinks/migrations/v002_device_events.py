"""Version 2: device events as the gateways sent them, and how each device is doing."""

from __future__ import annotations

from .base import DEDUP, SINK_COLUMNS, Migration

MIGRATION = Migration(
    2,
    "raw device events (RFID reads, footfall ticks, parking gate events) and device health",
    [
        f"""CREATE TABLE IF NOT EXISTS {{db}}.rfid_reads (
            event_id String,
            mall_id LowCardinality(String),
            reader_id LowCardinality(String),
            antenna UInt8,
            epc String,
            rssi_dbm Float32,
            ts DateTime64(3, 'UTC'),
            clock_skew_s Nullable(Float32),
            duplicate Bool,{SINK_COLUMNS},
            INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, reader_id, ts) {DEDUP}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_ticks (
            event_id String,
            mall_id LowCardinality(String),
            counter_id LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            interval_s UInt32,
            count_in UInt32,
            count_out UInt32,
            clock_skew_s Nullable(Float32),{SINK_COLUMNS},
            INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, counter_id, ts) {DEDUP}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_events (
            event_id String,
            mall_id LowCardinality(String),
            car_park_id LowCardinality(String),
            gate_id LowCardinality(String),
            plate String,
            direction Enum8('entry' = 1, 'exit' = 2),
            ts DateTime64(3, 'UTC'),
            clock_skew_s Nullable(Float32),{SINK_COLUMNS},
            INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, car_park_id, ts) {DEDUP}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.device_health (
            report_id String,
            device_id LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            last_seen Nullable(String),
            frames UInt64,
            events UInt64,
            rejects UInt64,
            duplicates UInt64,
            errors UInt64,
            refused UInt64,
            last_error Nullable(String),{SINK_COLUMNS}
        ) ENGINE = MergeTree ORDER BY (device_id, ts) TTL toDateTime(ts) + INTERVAL 90 DAY {DEDUP}""",
    ],
)
