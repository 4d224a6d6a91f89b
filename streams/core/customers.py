"""What the stream knows about each member as a customer, updated receipt by receipt.

``observe(state, txn, now, rules, params)`` folds one receipt into a member's
:class:`CustomerState` and returns the churn signals it causes;
``tick(state, now, rules, params)`` re-evaluates a member as time passes
without a purchase. Both are pure: the input state is never modified.

"Now" is event time: the latest event time the caller has seen, or an
``--as-of`` date. Asking about a time before the member's last receipt is
refused with :class:`AsOfError`, because T would shrink and P(alive) be wrong.

Choices, so the numbers can be read right:

- Days are ``date.toordinal()`` numbers; purchase days come from the receipt's
  ``business_day``, "now"'s day from its own date.
- ``repeat_days`` (BG/NBD's x) counts distinct purchase days after the first.
  A bit set of the 64 days up to the last purchase day tells a late receipt's
  day apart from a new one; a receipt more than 63 days late counts as a new day.
- Returns and voids reduce spend (net spend, the price-band spend and the spend
  trend), never below zero for the trend; they do not undo a visit or a preference.
- Preferences are quantities decayed with a half-life of a third of
  ``preference_period_days`` (default 90): a unit bought one period ago weighs
  1/8, and entries lighter than that are dropped, so the top 3 are the brands
  and categories bought most in about the last period. At most
  ``preference_slots`` entries are kept; the lightest is evicted first.
- The spend trend is a 30-day over a 180-day exponentially decayed spend rate
  (1 = steady, over 1 growing, under 1 shrinking), the lifecycle's signal of
  developing and declining members.
- The weekday and hour histograms count receipts (visits); the price-band
  histogram sums spend in cents by the line's unit price.
- A redelivered receipt (same ``txn_id`` as one of the member's last 8) changes nothing.
- ``mall_id`` is the mall of the member's latest receipt: where their churn signals are addressed.
- ``evaluated_s`` is the latest "now" the member was evaluated at: a tick before it (a stream's
  tick sent before a receipt that was evaluated later) changes nothing, so levels never step back in time.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from bisect import bisect_right
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from mallstream.settings import TOP_PREFERENCES as TOP
from mallstream.settings import CustomerRules

from ..records import PosTransaction
from .bgnbd import BgNbdParams, p_alive
from .segments import (
    SIGNAL_KINDS,
    Stage,
    alert_level,
    lifecycle_stage,
    rfm_segment,
)

RECENT_DAY_BITS = 64
RECENT_TXNS = 8
TXN_KEY_BYTES = 4


class AsOfError(ValueError):
    """ "Now" is before the member's last event: the answer would describe a past that already changed."""


def _zeros(n: int) -> Any:
    return msgspec.field(default_factory=lambda: [0] * n)


class CustomerState(msgspec.Struct, array_like=True):
    """One member as a customer; array-like so its msgpack carries no field names."""

    member_id: str
    first_day: int = 0
    last_day: int = 0
    recent_days: int = 0
    repeat_days: int = 0
    gap_square_sum: int = 0
    receipts: int = 0
    spend_cents: int = 0
    spend_fast: float = 0.0
    spend_slow: float = 0.0
    last_event_s: int = 0
    alert_level: int = 0
    brands: dict[str, float] = {}
    categories: dict[str, float] = {}
    price_band_cents: list[int] = _zeros(5)
    weekday_visits: list[int] = _zeros(7)
    hour_visits: list[int] = _zeros(24)
    recent_txns: bytes = b""
    mall_id: str = ""
    evaluated_s: int = 0

    @property
    def has_purchased(self) -> bool:
        return self.first_day > 0

    def inter_purchase_days(self) -> tuple[float, float] | None:
        """Mean and standard deviation of the gaps between purchase days; None before a repeat day."""
        if self.repeat_days == 0:
            return None
        mean = (self.last_day - self.first_day) / self.repeat_days
        return mean, math.sqrt(max(self.gap_square_sum / self.repeat_days - mean * mean, 0.0))


class ChurnSignal(msgspec.Struct, frozen=True):
    """A member's alert level changed: to ``churn_risk``, ``churned`` or back to ``recovered``."""

    member_id: str
    kind: str
    ts: dt.datetime
    p_alive: float | None
    stage: Stage
    previous_kind: str


class Insight(msgspec.Struct, frozen=True):
    """The member view's customer part, under the key names the CLI shows."""

    p_alive: float | None
    lifecycle_stage: Stage | None
    rfm_segment: str | None
    preferences: dict[str, list[str]]
    inter_purchase_days: tuple[float, float] | None
    spend_cents: int


def _day(now: dt.datetime) -> int:
    return now.date().toordinal()


def _refuse_stale(state: CustomerState, now: dt.datetime) -> None:
    if now.timestamp() < state.last_event_s:
        last = dt.datetime.fromtimestamp(state.last_event_s, now.tzinfo or dt.UTC)
        raise AsOfError(
            f"as of {now.isoformat()} is before member {state.member_id}'s last receipt at {last.isoformat()}"
        )


def _txn_key(txn: PosTransaction) -> bytes:
    return zlib.crc32(txn.txn_id.encode()).to_bytes(TXN_KEY_BYTES, "little")


def _seen(state: CustomerState, key: bytes) -> bool:
    """Whether the receipt is one of the member's last few (keys are 4-byte crc32s, packed in one bytes)."""
    recent = state.recent_txns
    return any(recent[i : i + TXN_KEY_BYTES] == key for i in range(0, len(recent), TXN_KEY_BYTES))


def _cents(amount: Decimal) -> int:
    return int(amount * 100)


def _decayed(value: float, days: int, half_life: float) -> float:
    factor: float = 2.0 ** (-days / half_life)  # typeshed's float ** float is Any: a negative base gives a complex
    return value * factor


def _with_purchase_day(state: CustomerState, day: int) -> dict[str, int]:
    """first/last day, the recent-day bits, x and the squared gaps after a purchase on ``day``."""
    if not state.has_purchased:
        return {"first_day": day, "last_day": day, "recent_days": 1}
    if day > state.last_day:
        gap = day - state.last_day
        recent = ((state.recent_days << gap) | 1) & ((1 << RECENT_DAY_BITS) - 1)
        return {
            "last_day": day,
            "recent_days": recent,
            "repeat_days": state.repeat_days + 1,
            "gap_square_sum": state.gap_square_sum + gap * gap,
        }
    back = state.last_day - day
    if back < RECENT_DAY_BITS:
        if state.recent_days >> back & 1:
            return {}
        changes = {"recent_days": state.recent_days | 1 << back}
    elif day == state.first_day:
        return {}
    else:
        changes = {}
    return {**changes, "first_day": min(day, state.first_day), "repeat_days": state.repeat_days + 1}


def _preferences(
    scores: dict[str, float], bought: dict[str, float], days_on: int, rules: CustomerRules
) -> dict[str, float]:
    """Scores decayed ``days_on`` days to the new reference day, plus what was bought, pruned and capped."""
    half_life = rules.preference_half_life_days
    updated = {name: _decayed(score, days_on, half_life) for name, score in scores.items()}
    for name, qty in bought.items():
        updated[name] = updated.get(name, 0.0) + qty
    kept = {name: score for name, score in updated.items() if score >= 0.125}
    if len(kept) > rules.preference_slots:
        kept = dict(sorted(kept.items(), key=lambda item: -item[1])[: rules.preference_slots])
    return kept


def _bought(txn: PosTransaction, days_late: int, rules: CustomerRules) -> tuple[dict[str, float], dict[str, float]]:
    """Quantities by brand and by category, decayed if the receipt is older than the reference day."""
    weight = _decayed(1.0, days_late, rules.preference_half_life_days)
    brands: dict[str, float] = {}
    categories: dict[str, float] = {}
    for line in txn.lines:
        qty = float(line.qty) * weight
        if line.brand:
            brands[line.brand] = brands.get(line.brand, 0.0) + qty
        if line.category:
            categories[line.category] = categories.get(line.category, 0.0) + qty
    return brands, categories


def _price_bands(bands: list[int], txn: PosTransaction, sign: int, rules: CustomerRules) -> list[int]:
    updated = list(bands)
    for line in txn.lines:
        band = bisect_right(rules.price_band_edges, line.unit_price)
        updated[band] = max(updated[band] + sign * _cents(line.amount), 0)
    return updated


def _spend_rates(
    state: CustomerState, reference_day: int, day: int, cents: int, rules: CustomerRules
) -> dict[str, float]:
    """Both decayed spend sums moved to ``reference_day`` with ``cents`` spent on ``day`` added (or taken off)."""
    moved = reference_day - state.last_day if state.has_purchased else 0
    late = reference_day - day
    fast, slow = rules.trend_fast_half_life_days, rules.trend_slow_half_life_days
    return {
        "spend_fast": max(_decayed(state.spend_fast, moved, fast) + _decayed(cents, late, fast), 0.0),
        "spend_slow": max(_decayed(state.spend_slow, moved, slow) + _decayed(cents, late, slow), 0.0),
    }


def _with_receipt(state: CustomerState, txn: PosTransaction, rules: CustomerRules) -> CustomerState:
    day = txn.business_day.toordinal()
    cents = _cents(txn.total)
    common = {
        "last_event_s": max(state.last_event_s, int(txn.ts.timestamp())),
        "recent_txns": (state.recent_txns + _txn_key(txn))[-TXN_KEY_BYTES * RECENT_TXNS :],
        "mall_id": txn.mall_id or state.mall_id,
    }
    if txn.kind != "sale":
        trend = (
            _spend_rates(state, state.last_day, min(day, state.last_day), -cents, rules) if state.has_purchased else {}
        )
        return msgspec.structs.replace(
            state,
            **common,
            **trend,
            spend_cents=state.spend_cents - cents,
            price_band_cents=_price_bands(state.price_band_cents, txn, -1, rules),
        )
    days = _with_purchase_day(state, day)
    reference_day = max(day, state.last_day)
    days_on = reference_day - state.last_day if state.has_purchased else 0
    brands, categories = _bought(txn, reference_day - day, rules)
    weekday, hour = list(state.weekday_visits), list(state.hour_visits)
    weekday[txn.business_day.weekday()] += 1
    hour[txn.ts.hour] += 1
    return msgspec.structs.replace(
        state,
        **common,
        **days,
        **_spend_rates(state, reference_day, day, cents, rules),
        receipts=state.receipts + 1,
        spend_cents=state.spend_cents + cents,
        brands=_preferences(state.brands, brands, days_on, rules),
        categories=_preferences(state.categories, categories, days_on, rules),
        price_band_cents=_price_bands(state.price_band_cents, txn, 1, rules),
        weekday_visits=weekday,
        hour_visits=hour,
    )


def bgnbd_summary(state: CustomerState, now: dt.datetime) -> tuple[int, int, int]:
    """(x, t_x, T) in days, as BG/NBD wants them, at ``now``."""
    T = max(_day(now), state.last_day) - state.first_day
    return state.repeat_days, state.last_day - state.first_day, T


def spend_trend(state: CustomerState, now: dt.datetime, rules: CustomerRules) -> float:
    """Recent over long-run spend rate at ``now``: 1 steady, 0 when nothing was spent lately."""
    idle = max(_day(now) - state.last_day, 0)
    fast, slow = rules.trend_fast_half_life_days, rules.trend_slow_half_life_days
    long_run = _decayed(state.spend_slow, idle, slow) / slow
    return _decayed(state.spend_fast, idle, fast) / fast / long_run if long_run > 0 else 0.0


def _stage(state: CustomerState, now: dt.datetime, rules: CustomerRules, alive: float | None) -> Stage:
    x, _, T = bgnbd_summary(state, now)
    return lifecycle_stage(
        rules.lifecycle,
        age_days=T,
        recency_days=max(_day(now) - state.last_day, 0),
        repeat_days=x,
        p_alive=alive,
        trend=spend_trend(state, now, rules),
    )


def _p_alive(state: CustomerState, now: dt.datetime, params: BgNbdParams | None) -> float | None:
    return None if params is None else p_alive(params, *bgnbd_summary(state, now))


def _evaluate(
    state: CustomerState, now: dt.datetime, rules: CustomerRules, params: BgNbdParams | None
) -> tuple[CustomerState, list[ChurnSignal]]:
    if not state.has_purchased:
        return state, []
    alive = _p_alive(state, now, params)
    stage = _stage(state, now, rules, alive)
    level = alert_level(rules.signals, state.alert_level, p_alive=alive, stage=stage)
    evaluated = max(state.evaluated_s, int(now.timestamp()))
    if level == state.alert_level:
        return msgspec.structs.replace(state, evaluated_s=evaluated), []
    signal = ChurnSignal(
        member_id=state.member_id,
        kind=SIGNAL_KINDS[level],
        ts=now,
        p_alive=alive,
        stage=stage,
        previous_kind=SIGNAL_KINDS[state.alert_level],
    )
    return msgspec.structs.replace(state, alert_level=level, evaluated_s=evaluated), [signal]


def observe(
    state: CustomerState, txn: PosTransaction, now: dt.datetime, rules: CustomerRules, params: BgNbdParams | None
) -> tuple[CustomerState, list[ChurnSignal]]:
    """Fold one of the member's receipts in and re-evaluate them at ``now`` (at or after the receipt)."""
    if now < txn.ts:
        raise AsOfError(f"now ({now.isoformat()}) is before receipt {txn.txn_id} at {txn.ts.isoformat()}")
    _refuse_stale(state, now)
    if _seen(state, _txn_key(txn)):
        return state, []
    return _evaluate(_with_receipt(state, txn, rules), now, rules, params)


def tick(
    state: CustomerState, now: dt.datetime, rules: CustomerRules, params: BgNbdParams | None
) -> tuple[CustomerState, list[ChurnSignal]]:
    """Re-evaluate a member as T grows without a purchase: P(alive) falls, the stage may move on.

    A tick before the member's latest evaluation changes nothing.
    """
    _refuse_stale(state, now)
    if now.timestamp() < state.evaluated_s:
        return state, []
    return _evaluate(state, now, rules, params)


def top_preferences(state: CustomerState) -> dict[str, list[str]]:
    """The member's top 3 brands and top 3 categories, most bought (lately) first."""
    return {
        name: [key for key, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:TOP]]
        for name, scores in (("brands", state.brands), ("categories", state.categories))
    }


def insight(state: CustomerState, now: dt.datetime, rules: CustomerRules, params: BgNbdParams | None) -> Insight:
    """The member view at ``now``: P(alive), lifecycle stage, RFM segment and preferences."""
    _refuse_stale(state, now)
    if not state.has_purchased:
        return Insight(None, None, None, top_preferences(state), None, state.spend_cents)
    alive = _p_alive(state, now, params)
    x, _, _ = bgnbd_summary(state, now)
    segment = rfm_segment(
        rules.rfm, recency_days=max(_day(now) - state.last_day, 0), purchase_days=x + 1, spend_cents=state.spend_cents
    )
    return Insight(
        p_alive=alive,
        lifecycle_stage=_stage(state, now, rules, alive),
        rfm_segment=segment,
        preferences=top_preferences(state),
        inter_purchase_days=state.inter_purchase_days(),
        spend_cents=state.spend_cents,
    )


def _noon(day: int) -> dt.datetime:
    """A moment of ``day``: the core reads only the day of "now"."""
    return dt.datetime.combine(dt.date.fromordinal(day), dt.time(12), dt.UTC)


def _shown_on(
    state: CustomerState, day: int, rules: CustomerRules, params: BgNbdParams | None
) -> tuple[Stage, str, int]:
    """What a tick on ``day`` would show of the member: stage, RFM segment and alert level."""
    now = _noon(day)
    alive = _p_alive(state, now, params)
    stage = _stage(state, now, rules, alive)
    segment = rfm_segment(
        rules.rfm,
        recency_days=max(day - state.last_day, 0),
        purchase_days=state.repeat_days + 1,
        spend_cents=state.spend_cents,
    )
    return stage, segment, alert_level(rules.signals, state.alert_level, p_alive=alive, stage=stage)


def _first_day(low: int, high: int, holds: Callable[[int], bool]) -> int | None:
    """The first day in [low, high] on which ``holds``, for a condition that once true stays true."""
    if low > high or not holds(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle + 1
    return low


def next_change_day(state: CustomerState, day: int, rules: CustomerRules, params: BgNbdParams | None) -> int | None:
    """The first day after ``day`` on which, with no purchase, a tick would show the member otherwise; None: never.

    Without a purchase every input of the stage, segment and alert level moves one way:
    age and recency grow, P(alive) and the spend trend fall. So each boundary is crossed
    once, on a day found directly (age, recency) or by bisection (P(alive), trend), and
    between two such days nothing shown can change. The caller evaluates the member on the
    first of them that changes what is shown, instead of every member every day.
    """
    if not state.has_purchased:
        return None
    life, last = rules.lifecycle, state.last_day
    horizon = max(
        last + life.churned_after_days, state.first_day + life.new_days + 1, last + max(rules.rfm.recency_days) + 1
    )
    candidates: set[int | None] = {
        state.first_day + life.new_days + 1,
        last + life.churned_after_days,
        *(last + edge + 1 for edge in rules.rfm.recency_days),
    }
    if params is not None:
        for level in (life.churned_p_alive, life.declining_p_alive, rules.signals.at_risk_below):

            def alive_below(d: int, level: float = level) -> bool:
                return p_alive(params, *bgnbd_summary(state, _noon(d))) < level

            candidates.add(_first_day(day + 1, horizon, alive_below))
    candidates.add(_first_day(day + 1, horizon, lambda d: spend_trend(state, _noon(d), rules) < life.declining_trend))
    candidates.add(_first_day(day + 1, horizon, lambda d: spend_trend(state, _noon(d), rules) <= life.developing_trend))
    shown = _shown_on(state, day, rules, params)
    due = sorted(c for c in candidates if c is not None and day < c <= horizon)
    return next((d for d in due if _shown_on(state, d, rules, params) != shown), None)
