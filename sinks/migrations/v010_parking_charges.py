"""Version 10: what each parking stay cost, and how it was paid."""

from __future__ import annotations

from .base import Migration


def parking_charges_view(plate: str) -> str:
    """The parking_charges view over parking_stays, whose plate column is ``plate`` (``plate_hash`` from version 11)."""
    return f"""CREATE VIEW IF NOT EXISTS {{db}}.parking_charges AS
               SELECT s.row_id AS stay_id, s.mall_id AS mall_id, s.car_park_id AS car_park_id, s.{plate} AS {plate},
                      s.member_id AS member_id, s.entry AS entry, s.exit AS exit, s.exit_gate AS exit_gate,
                      s.duration_s AS duration_s,
                      multiIf(s.member_id = '', toInt64(s.fee * 100), ifNull(c.stay_id, '') = '', NULL,
                              c.fee_cents) AS fee_cents,
                      ifNull(c.waived_cents, 0) AS waived_cents,
                      fee_cents - waived_cents AS charged_cents,
                      ifNull(c.free_reason, '') AS free_reason,
                      multiIf(ifNull(charged_cents, 0) = 0, '', c.points_spent > 0, 'points',
                              c.stored_value_cents > 0, 'stored_value', 'cash') AS paid_with,
                      ifNull(c.points_spent, 0) AS points_spent,
                      ifNull(c.stored_value_cents, 0) AS stored_value_cents,
                      ifNull(c.note, '') AS note,
                      ifNull(c.rule_version, '') AS rule_version
               FROM {{db}}.parking_stays AS s
               LEFT JOIN (
                   SELECT substring(txn_id, 9) AS stay_id,
                          sumIf(amount, cause = 'parking_fee') AS fee_cents,
                          sumIf(amount, cause = 'parking_discount') AS waived_cents,
                          anyIf(reason, cause = 'parking_discount') AS free_reason,
                          -sumIf(delta, cause = 'points_spent') AS points_spent,
                          -sumIf(delta, cause = 'stored_value_debit') AS stored_value_cents,
                          anyIf(reason, cause IN ('parking_fee', 'rejected') AND reason != '') AS note,
                          any(rule_version) AS rule_version
                   FROM {{db}}.ledger_entries WHERE startsWith(entry_id, 'parking:')
                   GROUP BY stay_id) AS c ON c.stay_id = s.row_id"""


MIGRATION = Migration(
    10,
    "parking stays name the member whose card settles them; parking_charges: the fee, waiver and payment of each stay",
    [
        """ALTER TABLE {db}.parking_stays ADD COLUMN IF NOT EXISTS member_id String AFTER fee""",
        # A member's stay is priced on the card: its ledger entries (txn_id parking:<stay id>) say the fee, the
        # waiver and its reason, and the points or stored value that paid it. Anyone else's stay carries the fee
        # table's price. fee_cents is NULL while a member's stay is not settled yet, or when the entry was missed
        # (the length is unknown); paid_with is empty when nothing was due.
        parking_charges_view("plate"),
    ],
)
