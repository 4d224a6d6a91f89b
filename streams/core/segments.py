"""Lifecycle stage, RFM segment and churn-alert level, from a member's numbers.

Pure functions of plain numbers (days, counts, cents, P(alive)), so they are
tested without building a member state. Every boundary is a field of a
pydantic model with its default documented; the seeds' lifecycle is
new -> developing (spend growing) -> mature (steady spend) -> declining
(spend shrinking) -> churned.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Stage = Literal["new", "developing", "mature", "declining", "churned"]

HEALTHY, AT_RISK, CHURNED = 0, 1, 2
#: The signal sent when a member's alert level changes to the given level.
SIGNAL_KINDS = {HEALTHY: "recovered", AT_RISK: "churn_risk", CHURNED: "churned"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LifecycleRules(_Model):
    """Stage boundaries, checked in the order new, churned, declining, developing, mature."""

    new_days: int = Field(default=90, ge=0, description="first purchase at most this many days ago: new")
    churned_p_alive: float = Field(default=0.2, ge=0, le=1, description="P(alive) under this: churned")
    churned_after_days: int = Field(
        default=365, ge=1, description="no purchase for this many days: churned, whatever P(alive) says"
    )
    declining_p_alive: float = Field(default=0.5, ge=0, le=1, description="P(alive) under this: declining")
    declining_trend: float = Field(
        default=0.5, gt=0, description="recent spend rate under this share of the long-run rate: declining"
    )
    developing_trend: float = Field(
        default=1.5, gt=0, description="recent spend rate over this multiple of the long-run rate: developing"
    )
    mature_min_repeat_days: int = Field(
        default=4, ge=0, description="fewer repeat purchase days than this: still developing"
    )


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


Edges = tuple[int, int, int, int]


class RfmSegment(_Model):
    """A named box of RFM scores (1-5 each, bounds inclusive)."""

    name: str
    recency: tuple[int, int] = (1, 5)
    frequency: tuple[int, int] = (1, 5)
    monetary: tuple[int, int] = (1, 5)

    def holds(self, r: int, f: int, m: int) -> bool:
        return all(low <= score <= high for (low, high), score in ((self.recency, r), (self.frequency, f), (self.monetary, m)))


DEFAULT_SEGMENTS = (
    RfmSegment(name="Champions", recency=(4, 5), frequency=(4, 5), monetary=(4, 5)),
    RfmSegment(name="Loyal", recency=(3, 5), frequency=(4, 5)),
    RfmSegment(name="Can't Lose Them", recency=(1, 2), frequency=(4, 5), monetary=(4, 5)),
    RfmSegment(name="At Risk", recency=(1, 2), frequency=(3, 5)),
    RfmSegment(name="New", recency=(4, 5), frequency=(1, 1)),
    RfmSegment(name="Potential Loyalists", recency=(3, 5), frequency=(2, 3)),
    RfmSegment(name="Lost", recency=(1, 1), frequency=(1, 2)),
    RfmSegment(name="Hibernating", recency=(2, 2), frequency=(1, 2)),
)


class RfmRules(_Model):
    """Absolute score cut-offs (a stream has no population to take quantiles of) and the segment boxes."""

    recency_days: Edges = Field(
        default=(14, 30, 60, 120), description="at most 14 days since the last purchase scores 5, ... over 120 scores 1"
    )
    purchase_days: Edges = Field(
        default=(2, 4, 8, 16), description="distinct purchase days: under 2 scores 1, ... 16 or more scores 5"
    )
    spend: Edges = Field(
        default=(500_00, 2_000_00, 5_000_00, 20_000_00), description="net spend in cents: under 500.00 scores 1, ..."
    )
    segments: tuple[RfmSegment, ...] = Field(default=DEFAULT_SEGMENTS, description="first box that holds wins")
    otherwise: str = Field(default="Needs Attention", description="segment of a member no box holds")

    @model_validator(mode="after")
    def _edges_ascend(self) -> RfmRules:
        for name in ("recency_days", "purchase_days", "spend"):
            edges = getattr(self, name)
            if list(edges) != sorted(edges):
                raise ValueError(f"{name} must ascend: {edges}")
        return self


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


class ChurnSignalRules(_Model):
    """When a member's alert level changes; the gap between the two thresholds is the hysteresis."""

    at_risk_below: float = Field(default=0.5, ge=0, le=1, description="P(alive) under this: at risk")
    recovered_above: float = Field(default=0.7, ge=0, le=1, description="P(alive) at or over this: healthy again")

    @model_validator(mode="after")
    def _band(self) -> ChurnSignalRules:
        if self.recovered_above < self.at_risk_below:
            raise ValueError("recovered_above must not be under at_risk_below, or levels would flap")
        return self


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
