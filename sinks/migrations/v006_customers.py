"""Version 6: member snapshots and receipts by member, and the customer dashboards' views over them."""

from __future__ import annotations

from .base import DEDUP, SINK_COLUMNS, Migration

MIGRATION = Migration(
    6,
    "customer intelligence: member snapshots, receipts by member, dashboard views by value class",
    [
        f"""CREATE TABLE IF NOT EXISTS {{db}}.customer_snapshots (
            snapshot_id String,
            member_id String,
            mall_id LowCardinality(String),
            as_of DateTime64(3, 'UTC'),
            first_purchase Nullable(Date),
            last_purchase Nullable(Date),
            repeat_days UInt32,
            receipts UInt32,
            spend_cents Int64,
            p_alive Nullable(Float64),
            lifecycle_stage LowCardinality(Nullable(String)),
            rfm_segment LowCardinality(Nullable(String)),
            value_class LowCardinality(String),
            alert LowCardinality(String),
            top_brands Array(String),
            top_categories Array(String),
            price_band_cents Array(Int64),
            weekday_visits Array(UInt32),
            hour_visits Array(UInt32),
            tier LowCardinality(String),
            age_band LowCardinality(String),
            gender LowCardinality(String),
            region LowCardinality(String),
            occupation LowCardinality(String),
            education LowCardinality(String),{SINK_COLUMNS}
        ) ENGINE = ReplacingMergeTree(as_of) ORDER BY member_id {DEDUP}""",
        # every receipt once, returns and voids negative; line arrays are parallel
        f"""CREATE TABLE IF NOT EXISTS {{db}}.receipts_by_member (
            txn_id String,
            mall_id LowCardinality(String),
            member_id Nullable(String),
            store_id LowCardinality(String),
            kind LowCardinality(String),
            ts DateTime64(3, 'UTC'),
            business_day Date,
            total_cents Int64,
            line_categories Array(String),
            line_brands Array(String),
            line_amount_cents Array(Int64),{SINK_COLUMNS}
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(business_day) ORDER BY txn_id {DEDUP}""",
        # the views read the latest snapshot of every member, so a class or stage is always the current one
        """CREATE VIEW IF NOT EXISTS {db}.customer_pyramid AS
           SELECT value_class, count() AS members, sum(spend_cents) AS spend_cents,
                  members / sum(members) OVER () AS member_share, spend_cents / sum(spend_cents) OVER () AS spend_share
           FROM {db}.customer_snapshots FINAL GROUP BY value_class""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_lifecycle AS
           SELECT ifNull(lifecycle_stage, 'no purchase') AS stage, count() AS members, sum(spend_cents) AS spend_cents
           FROM {db}.customer_snapshots FINAL GROUP BY stage""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_class_lines AS
           SELECT s.value_class AS value_class, r.member_id AS member_id, r.business_day AS business_day,
                  category, brand, amount_cents
           FROM (SELECT * FROM {db}.receipts_by_member FINAL WHERE member_id IS NOT NULL) AS r
           ARRAY JOIN r.line_categories AS category, r.line_brands AS brand, r.line_amount_cents AS amount_cents
           INNER JOIN (SELECT member_id, value_class FROM {db}.customer_snapshots FINAL) AS s
               ON s.member_id = assumeNotNull(r.member_id)""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_class_categories AS
           SELECT value_class, category, sum(amount_cents) AS spend_cents, uniqExact(member_id) AS members
           FROM {db}.customer_class_lines GROUP BY value_class, category""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_class_brands AS
           SELECT value_class, brand, sum(amount_cents) AS spend_cents, uniqExact(member_id) AS members
           FROM {db}.customer_class_lines GROUP BY value_class, brand""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_class_times AS
           SELECT value_class, sumForEach(weekday_visits) AS weekday_visits, sumForEach(hour_visits) AS hour_visits
           FROM {db}.customer_snapshots FINAL GROUP BY value_class""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_class_price_bands AS
           SELECT value_class, sumForEach(price_band_cents) AS price_band_cents
           FROM {db}.customer_snapshots FINAL GROUP BY value_class""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_brand_favourites AS
           SELECT brand, count() AS members, sum(spend_cents) AS spend_cents
           FROM {db}.customer_snapshots FINAL ARRAY JOIN top_brands AS brand GROUP BY brand""",
        """CREATE VIEW IF NOT EXISTS {db}.customer_composition AS
           SELECT tier, age_band, gender, region, occupation, education, value_class,
                  count() AS members, sum(spend_cents) AS spend_cents, sum(receipts) AS receipts,
                  spend_cents / greatest(receipts, 1) AS average_ticket_cents
           FROM {db}.customer_snapshots FINAL
           GROUP BY tier, age_band, gender, region, occupation, education, value_class""",
    ],
)
