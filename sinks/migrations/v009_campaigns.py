"""Version 9: what each voucher campaign issued, what was redeemed, and who took part."""

from __future__ import annotations

from .base import Migration

MIGRATION = Migration(
    9,
    "campaign analysis: participants, their triggering spend and what was redeemed; composition by value class",
    [
        # per campaign and day: who took part, the spend of the receipts that earned the vouchers, redemptions
        """CREATE VIEW IF NOT EXISTS {db}.campaign_participation AS
           SELECT l.mall_id AS mall_id, l.business_day AS business_day, l.rule_id AS campaign_id,
                  uniqExactIf(l.member_id, l.cause = 'voucher_issued') AS members_issued,
                  uniqExactIf(l.member_id, l.cause = 'voucher_redeemed') AS members_redeemed,
                  countIf(l.cause = 'voucher_issued') AS vouchers_issued,
                  sumIf(l.delta, l.cause = 'voucher_issued') AS issued_cents,
                  -sumIf(l.delta, l.cause = 'voucher_redeemed') AS redeemed_cents,
                  -sumIf(l.delta, l.cause = 'voucher_clawed') AS clawed_cents,
                  sumIf(r.total_cents, l.cause = 'voucher_issued') AS triggering_spend_cents
           FROM {db}.ledger_entries AS l
           LEFT JOIN (SELECT txn_id, total_cents FROM {db}.receipts_by_member FINAL) AS r ON r.txn_id = l.txn_id
           WHERE l.cause IN ('voucher_issued', 'voucher_redeemed', 'voucher_clawed')
           GROUP BY mall_id, business_day, campaign_id""",
        """CREATE VIEW IF NOT EXISTS {db}.campaign_composition AS
           SELECT l.rule_id AS campaign_id, s.value_class AS value_class, s.lifecycle_stage AS lifecycle_stage,
                  uniqExact(l.member_id) AS members
           FROM {db}.ledger_entries AS l
           INNER JOIN (SELECT member_id, value_class, lifecycle_stage FROM {db}.customer_snapshots FINAL) AS s
               ON s.member_id = l.member_id
           WHERE l.cause = 'voucher_issued'
           GROUP BY campaign_id, value_class, lifecycle_stage""",
    ],
)
