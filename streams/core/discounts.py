"""Member discounts by card tier (会员折扣策略): a percentage or an amount off the lines in scope.

The till applies the discount when it prices the sale; the hub computes the same
figure from the posted lines so the ledger and the backtest know what each rule
cost. Rounding: a percentage is taken once over the in-scope total, half up to
the cent; an amount never exceeds the in-scope total.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from ..records import PosTransaction
from .accounts import Cause, Effect, MemberCard
from .earning import receipt_lines
from .rules import RuleBook
from .scopes import spend_in


def tier_discounts(card: MemberCard, txn: PosTransaction, rules: RuleBook, cause: Cause) -> list[Effect]:
    lines = receipt_lines(txn)
    effects: list[Effect] = []
    for discount in rules.tier_discounts:
        if card.tier not in discount.tiers:
            continue
        in_scope = spend_in(discount.scope, lines, txn.store_id, discount.exclude)
        if not in_scope or in_scope < discount.min_spend:
            continue
        if discount.percent is not None:
            off = int((Decimal(in_scope) * discount.percent / 100).to_integral_value(rounding=ROUND_HALF_UP))
        else:
            off = min(discount.amount or 0, in_scope)
        if off:
            effects.append(cause.effect("tier_discount", discount.id, amount=off))
    return effects
