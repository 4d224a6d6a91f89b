"""Version 7: reception's record of acknowledged alerts."""

from __future__ import annotations

from .base import DEDUP, SINK_COLUMNS, Migration

MIGRATION = Migration(
    7,
    "reception records (staff acknowledgements of alerts, with notes) and their daily summary",
    [
        f"""CREATE TABLE IF NOT EXISTS {{db}}.reception_records (
            reception_id String,
            alert_id String,
            mall_id LowCardinality(String),
            zone_id LowCardinality(String),
            alert_kind LowCardinality(String),
            member_id Nullable(String),
            tier LowCardinality(Nullable(String)),
            alert_ts DateTime64(3, 'UTC'),
            staff_id String,
            acked_at DateTime64(3, 'UTC'),
            business_day Date,
            channel LowCardinality(String),
            note_kind LowCardinality(String),
            note String,{SINK_COLUMNS}
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(business_day) ORDER BY reception_id {DEDUP}""",
        # a plain view: a few hundred acknowledgements a day are summed when asked
        """CREATE VIEW IF NOT EXISTS {db}.reception_daily AS
           SELECT mall_id, business_day, zone_id, alert_kind, note_kind, count() AS records,
                  uniqExact(member_id) AS members, uniqExact(staff_id) AS staff,
                  round(avg(dateDiff('millisecond', alert_ts, acked_at)) / 1000, 1) AS mean_seconds_to_ack
           FROM {db}.reception_records GROUP BY mall_id, business_day, zone_id, alert_kind, note_kind""",
    ],
)
