"""Version 8: ledger entries name the rule that decided them; totals per rule and day."""

from __future__ import annotations

from .base import DEDUP, Migration

MIGRATION = Migration(
    8,
    "ledger entries name their rule and version; daily totals per rule and campaign",
    [
        """ALTER TABLE {db}.ledger_entries
             ADD COLUMN IF NOT EXISTS rule_id LowCardinality(String) AFTER business_day,
             ADD COLUMN IF NOT EXISTS rule_version LowCardinality(String) AFTER rule_id,
             ADD COLUMN IF NOT EXISTS amount Int64 AFTER rule_version,
             ADD COLUMN IF NOT EXISTS voucher_id String AFTER amount,
             ADD COLUMN IF NOT EXISTS reason String AFTER voucher_id,
             ADD COLUMN IF NOT EXISTS by String AFTER reason""",
        # points earned and reversed by the kind of entry, now that a reduction rule earns negative points
        "DROP VIEW IF EXISTS {db}.points_daily_mv",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.points_daily_mv TO {db}.points_daily AS
           SELECT mall_id, business_day, store_id, account,
                  sumIf(delta, cause = 'points_earned') AS earned, sumIf(-delta, cause = 'points_reversed') AS reversed,
                  count() AS entries
           FROM {db}.ledger_entries WHERE account = 'points'
           GROUP BY mall_id, business_day, store_id, account""",
        # one row per day, rule (a voucher campaign is a rule) and kind of effect
        f"""CREATE TABLE IF NOT EXISTS {{db}}.rules_daily (
            mall_id LowCardinality(String),
            business_day Date,
            rule_id LowCardinality(String),
            rule_version LowCardinality(String),
            cause LowCardinality(String),
            account_kind LowCardinality(String),
            delta SimpleAggregateFunction(sum, Int64),
            amount SimpleAggregateFunction(sum, Int64),
            entries SimpleAggregateFunction(sum, UInt64),
            members AggregateFunction(uniq, String)
        ) ENGINE = AggregatingMergeTree
          ORDER BY (mall_id, business_day, rule_id, rule_version, cause, account_kind) {DEDUP}""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rules_daily_mv TO {db}.rules_daily AS
           SELECT mall_id, business_day, rule_id, rule_version, cause,
                  splitByChar(':', account)[1] AS account_kind,
                  sum(delta) AS delta, sum(amount) AS amount, count() AS entries, uniqState(member_id) AS members
           FROM {db}.ledger_entries
           GROUP BY mall_id, business_day, rule_id, rule_version, cause, account_kind""",
    ],
)
