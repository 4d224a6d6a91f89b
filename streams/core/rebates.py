"""Turning points into money by a rebate strategy: ratio, fixed amount per block of points, or formula.

Rounding: money is rounded down to the cent and only whole ``points_step`` blocks
are converted, so a rebate never pays out more than the strategy says.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from .accounts import POINTS, STORED_VALUE, Cause, Effect, MemberCard
from .formula import FormulaError
from .rules import RebateStrategy, RuleBook


def conversion(strategy: RebateStrategy, points: int, tier_rank: int) -> tuple[int, int]:
    """(points used, cents paid) for converting up to ``points`` points."""
    if points < max(strategy.min_points, 1):
        return 0, 0
    usable = points - points % strategy.points_step
    if strategy.fixed is not None and strategy.per_points is not None:
        blocks = usable // strategy.per_points
        return blocks * strategy.per_points, blocks * strategy.fixed
    if strategy.ratio is not None:
        money = usable * strategy.ratio
    else:
        assert strategy.formula is not None
        money = strategy.formula({"points": Decimal(usable), "tier_rank": Decimal(tier_rank)})
    paid = int((money * 100).to_integral_value(rounding=ROUND_FLOOR))
    return (usable, paid) if paid > 0 else (0, 0)


def rebate(strategy: RebateStrategy, points: int, tier_rank: int, cause: Cause) -> list[Effect]:
    """Points spent and stored value credited for converting up to ``points``; a rejection if the formula fails."""
    try:
        used, paid = conversion(strategy, points, tier_rank)
    except FormulaError as exc:
        return [cause.effect("rejected", strategy.id, reason=str(exc))]
    if not used:
        return []
    return [
        cause.effect("points_spent", strategy.id, account=POINTS, delta=-used),
        cause.effect("rebate", strategy.id, account=STORED_VALUE, delta=paid),
    ]


def tier_rank(card: MemberCard, rules: RuleBook) -> int:
    """The card's tier as its position in the rule file's tier list (0 = base); a tier no longer listed ranks as base."""
    return rules.tiers.index(card.tier) if card.tier in rules.tiers else 0
