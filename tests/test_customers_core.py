"""Customer intelligence as pure functions: member state, stages, RFM, churn signals, value classes."""

import datetime as dt
from decimal import Decimal

import msgspec
import numpy as np
import pytest
from pydantic import ValidationError

from mallstream.churn_fit import fit_from_histories
from mallstream.simulators.purchases import PurchaseSimulation, simulate
from mallstream.streams.core.bgnbd import BgNbdParams
from mallstream.streams.core.customers import (
    AsOfError,
    CustomerRules,
    CustomerState,
    insight,
    next_change_day,
    observe,
    spend_trend,
    tick,
)
from mallstream.streams.core.pyramid import exact_classes, pyramid_cutoffs, value_class
from mallstream.streams.core.segments import (
    ChurnSignalRules,
    LifecycleRules,
    RfmRules,
    alert_level,
    lifecycle_stage,
    rfm_segment,
)
from mallstream.streams.records import PosLine, PosTransaction
from tests.support.churn import replay, signal_quality

CST = dt.timezone(dt.timedelta(hours=8))
DAY0 = dt.date(2026, 3, 2)  # a Monday
RULES = CustomerRules()
PARAMS = BgNbdParams(r=0.8, alpha=12.0, a=0.6, b=3.0)


def line(brand: str, qty: int = 1, price: str = "50.00", category: str = "") -> PosLine:
    return PosLine(
        sku=brand,
        qty=Decimal(qty),
        unit_price=Decimal(price),
        amount=Decimal(price) * qty,
        brand=brand,
        category=category or f"cat-{brand}",
    )


def receipt(
    txn_id: str, day: int, *lines: PosLine, kind: str = "sale", hour: int = 15, total: str | None = None
) -> PosTransaction:
    business_day = DAY0 + dt.timedelta(days=day)
    items = list(lines) or [line("X")]
    return PosTransaction(
        txn_id=txn_id,
        store_id="S1",
        workstation_id="T1",
        seq=1,
        ts=dt.datetime.combine(business_day, dt.time(hour), CST),
        business_day=business_day,
        kind=kind,
        total=Decimal(total) if total else sum((item.amount for item in items), Decimal(0)),
        lines=[] if total else items,
        member_id="M1",
        original_txn_id="t0" if kind != "sale" else None,
    )


def at(day: int, hour: int = 23) -> dt.datetime:
    return dt.datetime.combine(DAY0 + dt.timedelta(days=day), dt.time(hour), CST)


def feed(*txns: PosTransaction, params: BgNbdParams | None = PARAMS) -> tuple[CustomerState, list]:
    """Observe the receipts in the order given, "now" being the latest receipt time seen, as in the stream."""
    state, signals, now = CustomerState("M1"), [], txns[0].ts
    for txn in txns:
        now = max(now, txn.ts)
        state, emitted = observe(state, txn, now, RULES, params)
        signals += emitted
    return state, signals


def test_repeat_days_count_distinct_purchase_days_after_the_first_even_late_or_twice():
    state, _ = feed(
        receipt("a", 10),
        receipt("b", 10),
        receipt("c", 14),
        receipt("d", 30),
        receipt("e", 14, hour=11),  # late receipt for a day already counted
        receipt("f", 20),  # late receipt for a new day
        receipt("g", 3),  # before the first purchase: the new first day
    )
    assert (state.first_day, state.last_day, state.repeat_days) == (DAY0.toordinal() + 3, DAY0.toordinal() + 30, 4)


def test_inter_purchase_gaps_mean_and_spread():
    state, _ = feed(receipt("a", 0), receipt("b", 10), receipt("c", 30))
    mean, spread = state.inter_purchase_days()
    assert mean == 15 and spread == pytest.approx(5.0)
    assert feed(receipt("a", 0))[0].inter_purchase_days() is None


def test_returns_reduce_spend_and_a_redelivered_receipt_counts_once():
    state, _ = feed(
        receipt("a", 0, line("X", 2, "100.00")),
        receipt("a", 0, line("X", 2, "100.00")),
        receipt("r", 2, line("X", 1, "100.00"), kind="return"),
    )
    assert (state.spend_cents, state.receipts, state.repeat_days) == (100_00, 1, 0)
    assert state.price_band_cents == [0, 100_00, 0, 0, 0]


def test_price_bands_weekday_and_hour_histograms():
    state, _ = feed(
        receipt("a", 0, line("A", 1, "99.99"), line("B", 1, "100.00"), line("C", 2, "2500.00"), hour=10),
        receipt("b", 5, line("D", 1, "800.00"), hour=20),
    )
    assert state.price_band_cents == [99_99, 100_00, 0, 800_00, 5000_00]
    assert state.weekday_visits == [1, 0, 0, 0, 0, 1, 0]  # Monday, Saturday
    assert state.hour_visits[10] == state.hour_visits[20] == 1 and sum(state.hour_visits) == 2


def test_top_three_brands_by_quantity_and_old_favourites_fade():
    old = [receipt(f"o{i}", i, line("Gucci", 2)) for i in range(3)]
    recent = [
        receipt("r1", 200, line("Nike", 3), line("Zara", 2)),
        receipt("r2", 201, line("Uniqlo", 1), line("Nike", 1)),
    ]
    state, _ = feed(*old, *recent)
    preferences = insight(state, at(201), RULES, PARAMS).preferences
    assert preferences["brands"] == ["Nike", "Zara", "Uniqlo"]
    assert "Gucci" not in state.brands  # 200 days old: lighter than one unit bought a period ago
    assert preferences["categories"] == ["cat-Nike", "cat-Zara", "cat-Uniqlo"]


def test_preferences_keep_a_bounded_number_of_entries():
    state, _ = feed(receipt("a", 0, *[line(f"B{i}", qty=i + 1) for i in range(20)]))
    assert len(state.brands) == RULES.preference_slots and "B19" in state.brands and "B0" not in state.brands


def test_now_before_the_last_receipt_is_refused():
    state, _ = feed(receipt("a", 10))
    with pytest.raises(AsOfError, match="before member M1's last receipt"):
        tick(state, at(9), RULES, PARAMS)
    with pytest.raises(AsOfError):
        insight(state, at(10, hour=14), RULES, PARAMS)
    with pytest.raises(AsOfError, match="before receipt"):
        observe(state, receipt("b", 12), at(11), RULES, PARAMS)


def test_p_alive_falls_as_time_passes_and_signals_once_per_change_of_level():
    state, signals = feed(*[receipt(f"t{i}", 7 * i) for i in range(8)])
    assert signals == [] and state.alert_level == 0
    kinds = []
    for day in range(50, 400, 3):
        state, emitted = tick(state, at(day), RULES, PARAMS)
        kinds += [s.kind for s in emitted]
    assert kinds == ["churn_risk", "churned"]
    state, emitted = observe(state, receipt("back", 400), at(400), RULES, PARAMS)
    assert [(s.kind, s.previous_kind) for s in emitted] == [("recovered", "churned")]


def test_hysteresis_keeps_a_member_between_thresholds_at_their_level():
    rules = ChurnSignalRules(at_risk_below=0.5, recovered_above=0.7)
    assert alert_level(rules, 1, p_alive=0.6, stage="mature") == 1
    assert alert_level(rules, 0, p_alive=0.6, stage="mature") == 0
    assert alert_level(rules, 2, p_alive=0.6, stage="mature") == 1
    assert alert_level(rules, 1, p_alive=0.7, stage="mature") == 0
    with pytest.raises(ValidationError, match="recovered_above"):
        ChurnSignalRules(at_risk_below=0.6, recovered_above=0.5)


@pytest.mark.parametrize(
    ("numbers", "stage"),
    [
        ({"age_days": 30, "recency_days": 30, "repeat_days": 0, "p_alive": 1.0, "trend": 0.0}, "new"),
        ({"age_days": 400, "recency_days": 365, "repeat_days": 0, "p_alive": 1.0, "trend": 0.0}, "churned"),
        ({"age_days": 200, "recency_days": 90, "repeat_days": 6, "p_alive": 0.1, "trend": 1.0}, "churned"),
        ({"age_days": 200, "recency_days": 40, "repeat_days": 6, "p_alive": 0.4, "trend": 1.0}, "declining"),
        ({"age_days": 200, "recency_days": 40, "repeat_days": 6, "p_alive": 0.9, "trend": 0.3}, "declining"),
        ({"age_days": 200, "recency_days": 5, "repeat_days": 2, "p_alive": 0.9, "trend": 1.0}, "developing"),
        ({"age_days": 200, "recency_days": 5, "repeat_days": 9, "p_alive": 0.9, "trend": 2.0}, "developing"),
        ({"age_days": 200, "recency_days": 5, "repeat_days": 9, "p_alive": 0.9, "trend": 1.0}, "mature"),
        ({"age_days": 200, "recency_days": 5, "repeat_days": 9, "p_alive": None, "trend": 1.0}, "mature"),
    ],
)
def test_lifecycle_stages(numbers, stage):
    assert lifecycle_stage(LifecycleRules(), **numbers) == stage


def test_spend_trend_is_one_for_steady_spend_and_falls_when_spending_stops():
    state, _ = feed(*[receipt(f"t{i}", 2 * i) for i in range(750)])  # long enough for the 180-day rate to settle
    assert spend_trend(state, at(1498), RULES) == pytest.approx(1.0, abs=0.05)
    assert spend_trend(state, at(1560), RULES) < RULES.lifecycle.declining_trend


@pytest.mark.parametrize(
    ("recency", "days", "cents", "segment"),
    [
        (3, 20, 30_000_00, "Champions"),
        (20, 10, 1_000_00, "Loyal"),
        (200, 20, 30_000_00, "Can't Lose Them"),
        (90, 6, 1_000_00, "At Risk"),
        (5, 1, 100_00, "New"),
        (40, 3, 100_00, "Potential Loyalists"),
        (300, 1, 100_00, "Lost"),
        (100, 2, 100_00, "Hibernating"),
        (40, 1, 100_00, "Needs Attention"),
    ],
)
def test_rfm_segments(recency, days, cents, segment):
    assert rfm_segment(RfmRules(), recency_days=recency, purchase_days=days, spend_cents=cents) == segment


def test_rules_refuse_edges_out_of_order():
    with pytest.raises(ValidationError, match="ascend"):
        RfmRules(recency_days=(30, 14, 60, 120))
    with pytest.raises(ValidationError, match="ascend"):
        CustomerRules(price_band_edges=(Decimal(500), Decimal(100), Decimal(800), Decimal(2000)))


def test_state_round_trips_through_msgpack():
    state, _ = feed(receipt("a", 0, line("Nike", 2)), receipt("b", 9, line("Zara", 1, "900.00")))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=CustomerState) == state


@pytest.fixture(scope="module")
def drop_simulation():
    spec = PurchaseSimulation(members=2000, days=365, dropper_share=0.2, drop_day=180, drop_factor=0.0, seed=5)
    calibration = simulate(PurchaseSimulation(members=20_000, days=spec.drop_day, seed=99))
    params = fit_from_histories(calibration.purchase_days, spec.drop_day)
    histories = simulate(spec)
    return histories, replay(histories, RULES, params)


def test_churn_signals_find_the_members_who_dropped(drop_simulation):
    histories, result = drop_simulation
    quality = signal_quality(histories, result.signals, detect_within_days=120)
    assert quality.detectable > 100
    assert quality.recall >= 0.8 and quality.precision >= 0.7, quality


def test_never_two_signals_for_one_change_of_state(drop_simulation):
    _, result = drop_simulation
    last: dict[str, str] = {}
    for signal in result.signals:
        assert signal.kind != signal.previous_kind
        assert signal.previous_kind == last.get(signal.member_id, "recovered"), signal
        last[signal.member_id] = signal.kind


def test_members_of_a_population_that_does_not_churn_stay_quiet():
    spec = PurchaseSimulation(members=1000, days=365, a=1.0, b=5000.0, seed=5)
    params = fit_from_histories(
        simulate(PurchaseSimulation(members=10_000, days=365, a=1.0, b=5000.0, seed=9)).purchase_days, 365
    )
    signalled = {s.member_id for s in replay(simulate(spec), RULES, params).signals}
    assert len(signalled) <= 0.02 * spec.members


def test_value_classes_by_cutoffs():
    spend = np.arange(1, 1001) * 100
    cutoffs = pyramid_cutoffs(np.concatenate([spend, [0, 0, -500]]))
    assert (cutoffs.a_cents, cutoffs.b_cents, cutoffs.c_cents, cutoffs.members) == (991_00, 951_00, 801_00, 1000)
    assert [value_class(c, cutoffs) for c in (100_000, 99_100, 99_000, 95_100, 80_100, 80_000, 0)] == list("AABBCDD")
    assert list(exact_classes([5, 0, 9, 1])) == ["D", "D", "A", "D"]  # a class of a few members still holds one


def test_periodic_cutoffs_agree_with_exact_classes_as_spend_arrives():
    rng = np.random.default_rng(1)
    spend = np.zeros(50_000, dtype=np.int64)
    cutoffs = pyramid_cutoffs(spend)
    for batch in range(20):
        buyers = rng.integers(0, len(spend), 20_000)
        np.add.at(spend, buyers, (rng.lognormal(9, 1.2, len(buyers))).astype(np.int64))
        if batch % 5 == 4:  # recomputed every fifth batch, spend keeps arriving between recomputes
            cutoffs = pyramid_cutoffs(spend)
    np.add.at(spend, rng.integers(0, len(spend), 4000), rng.lognormal(9, 1.2, 4000).astype(np.int64))
    kept = np.array([value_class(int(c), cutoffs) for c in spend])
    assert np.mean(kept == exact_classes(spend)) >= 0.99


def _shown_by_tick(state: CustomerState, day: int, params: BgNbdParams | None) -> tuple:
    """What a tick at the end of ``day`` shows, through the public functions the agent calls."""
    now = at(day - DAY0.toordinal())
    ticked, _ = tick(state, now, RULES, params)
    seen = insight(ticked, now, RULES, params)
    return seen.lifecycle_stage, seen.rfm_segment, ticked.alert_level


@pytest.mark.parametrize("params", [PARAMS, None, BgNbdParams(r=0.3, alpha=4.0, a=0.2, b=2.5)])
@pytest.mark.parametrize("seed", range(12))
def test_the_next_change_day_is_the_first_day_a_daily_tick_would_show_the_member_otherwise(seed, params):
    """Against evaluating the member at every day's end, as the agent did, for two years of days."""
    rng = np.random.default_rng(seed)
    days = sorted(int(d) for d in rng.choice(400, size=int(rng.integers(1, 12)), replace=False))
    state, _ = feed(
        *(
            receipt(f"t{i}", d, line("X", int(rng.integers(1, 5)), f"{int(rng.integers(20, 3000))}.00"))
            for i, d in enumerate(days)
        ),
        params=params,
    )
    day = state.last_day
    checked = 0
    while True:
        due = next_change_day(state, day, RULES, params)
        shown = _shown_by_tick(state, day, params)
        later = (d for d in range(day + 1, day + 800) if _shown_by_tick(state, d, params) != shown)
        assert due == next(later, None), f"from day {day}"
        if due is None:
            break
        state, _ = tick(state, at(due - DAY0.toordinal()), RULES, params)
        day, checked = due, checked + 1
    assert checked >= 2  # a member without purchases passes at least the new-member and recency boundaries
