"""Lifecycle stage, RFM segment and churn-alert level, from a member's numbers.

Pure functions of plain numbers (days, counts, cents, P(alive)), so they are
tested without building a member state. Every boundary is a field of a
pydantic model of the ``customers:`` config section (``mallstream/settings.py``), with its
default documented; the seeds' lifecycle is
new -> developing (spend growing) -> mature (steady spend) -> declining
(spend shrinking) -> churned.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Literal

from mallstream.settings import ChurnSignalRules, LifecycleRules, RfmRules

Stage = Literal["new", "developing", "mature", "declining", "churned"]

HEALTHY, AT_RISK, CHURNED = 0, 1, 2
#: The signal sent when a member's alert level changes to the given level.
SIGNAL_KINDS = {HEALTHY: "recovered", AT_RISK: "churn_risk", CHURNED: "churned"}


def lifecycle_stage(
    rules: LifecycleRules, *, age_days: int, recency_days: int, repeat_days: int, p_alive: float | None, trend: float
) -> Stage:
    """The member's stage; ``p_alive`` is None when no BG/NBD parameters have been fitted yet.

    ``trend`` is the recent spend rate over the long-run spend rate (1 = steady).
    """
    if age_days <= rules.new_days:
        return "new"
    if recency_days >= rules.churned_after_days or (p_alive is not None and p_alive < rules.churned_p_alive):
        return "churned"
    if trend < rules.declining_trend or (p_alive is not None and p_alive < rules.declining_p_alive):
        return "declining"
    if repeat_days < rules.mature_min_repeat_days or trend > rules.developing_trend:
        return "developing"
    return "mature"


def rfm_scores(rules: RfmRules, *, recency_days: int, purchase_days: int, spend_cents: int) -> tuple[int, int, int]:
    """Recency, frequency and monetary scores, 5 best."""
    return (
        5 - bisect_left(rules.recency_days, recency_days),
        1 + bisect_right(rules.purchase_days, purchase_days),
        1 + bisect_right(rules.spend, spend_cents),
    )


def rfm_segment(rules: RfmRules, *, recency_days: int, purchase_days: int, spend_cents: int) -> str:
    """The first configured segment whose box holds the member's scores."""
    r, f, m = rfm_scores(rules, recency_days=recency_days, purchase_days=purchase_days, spend_cents=spend_cents)
    return next((segment.name for segment in rules.segments if segment.holds(r, f, m)), rules.otherwise)


def alert_level(rules: ChurnSignalRules, previous: int, *, p_alive: float | None, stage: Stage) -> int:
    """HEALTHY, AT_RISK or CHURNED; between the thresholds a member keeps the level they had.

    A churned member who is no longer churned but not yet recovered steps down to AT_RISK.
    """
    if stage == "churned":
        return CHURNED
    if p_alive is not None and p_alive < rules.at_risk_below:
        return AT_RISK
    if p_alive is None or p_alive >= rules.recovered_above:
        return HEALTHY
    return min(previous, AT_RISK)
