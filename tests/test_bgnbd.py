"""BG/NBD: P(alive) in closed form, the offline fit, and agreement with lifetimes' BetaGeoFitter."""

import datetime as dt
import math

import msgspec
import numpy as np
import pandas as pd
import pytest

from mallstream.churn_fit import (
    FittedParams,
    fit_from_histories,
    fit_from_states,
    load_params,
    save_params,
    summarise_histories,
)
from mallstream.simulators.purchases import PurchaseSimulation, receipts, simulate
from mallstream.streams.core.bgnbd import BgNbdParams, FitDidNotConverge, fit_bgnbd, log_likelihood, p_alive
from mallstream.streams.core.customers import CustomerRules, CustomerState, observe
from tests.conftest import SCALE

PARAMS = BgNbdParams(r=0.8, alpha=12.0, a=0.6, b=3.0)


@pytest.fixture(scope="module")
def histories():
    return simulate(PurchaseSimulation(members=20_000, days=365, seed=3))


@pytest.fixture(scope="module")
def summary(histories):
    return summarise_histories(histories.purchase_days, histories.simulation.days)


@pytest.fixture(scope="module")
def long_summary():
    """18 months of members joining all along, with bursts of visits, dropouts and a fifth slowing down mid-way."""
    spec = PurchaseSimulation(
        members=int(4000 * SCALE),
        days=548,
        joining_days=548,
        r=0.5,
        alpha=40.0,
        a=0.6,
        b=4.0,
        dropper_share=0.2,
        drop_day=300,
        drop_factor=0.1,
        burst_share=0.15,
        seed=18,
    )
    return summarise_histories(simulate(spec).purchase_days, spec.days)


def test_p_alive_is_the_published_closed_form():
    x, t_x, T = 4, 60.0, 200.0
    odds_dead = PARAMS.a / (PARAMS.b + x - 1) * ((PARAMS.alpha + T) / (PARAMS.alpha + t_x)) ** (PARAMS.r + x)
    assert p_alive(PARAMS, x, t_x, T) == pytest.approx(1 / (1 + odds_dead), rel=1e-12)


def test_a_member_without_repeat_purchase_is_alive_and_the_last_purchase_today_is_likeliest_alive():
    assert p_alive(PARAMS, 0, 0, 300) == 1.0
    assert p_alive(PARAMS, 5, 100, 100) > p_alive(PARAMS, 5, 100, 130) > p_alive(PARAMS, 5, 100, 300)


def test_p_alive_takes_arrays_and_never_overflows_into_nan():
    alive = p_alive(PARAMS, np.array([0, 3, 500]), np.array([0, 30, 10]), np.array([10, 40, 100_000]))
    assert alive.shape == (3,) and alive[0] == 1.0 and 0 < alive[1] < 1 and alive[2] == 0.0
    assert alive[1] == pytest.approx(p_alive(PARAMS, 3, 30, 40))


def test_fit_recovers_known_parameters(histories):
    # low purchase rates, so merging purchases on one day into one purchase day barely biases the fit
    spec = PurchaseSimulation(members=30_000, days=365, r=0.5, alpha=20.0, a=0.6, b=3.0, seed=2)
    fitted = fit_from_histories(simulate(spec).purchase_days, spec.days)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fitted, name) == pytest.approx(getattr(spec, name), rel=0.10), name


def test_fit_is_a_maximum_of_the_likelihood(summary):
    fitted = fit_bgnbd(*summary)
    best = log_likelihood(fitted, *summary)
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.97, 1.03):
            moved = msgspec.structs.replace(fitted, **{name: getattr(fitted, name) * factor})
            assert log_likelihood(moved, *summary) < best, (name, factor)


def test_fit_refuses_impossible_summaries():
    with pytest.raises(ValueError, match="t_x <= T"):
        fit_bgnbd([1, 2], [10, 50], [20, 40])
    with pytest.raises(ValueError, match="no members"):
        fit_bgnbd([], [], [])


def test_fit_climbs_at_least_as_high_as_lifetimes(long_summary):
    import lifetimes  # in the test extra: missing, this fails rather than skips

    x, t_x, T = long_summary
    reference = lifetimes.BetaGeoFitter(penalizer_coef=0.0).fit(x, t_x, T)
    theirs = BgNbdParams(**{name: float(reference.params_[name]) for name in ("r", "alpha", "a", "b")})
    ours = fit_bgnbd(x, t_x, T)
    assert log_likelihood(ours, x, t_x, T) / len(x) >= log_likelihood(theirs, x, t_x, T) / len(x) - 1e-6


def test_p_alive_is_lifetimes_conditional_probability_alive_for_every_member(long_summary):
    import lifetimes

    x, t_x, T = long_summary
    reference = lifetimes.BetaGeoFitter()
    reference.params_ = pd.Series({"r": 0.5, "alpha": 40.0, "a": 0.6, "b": 4.0})
    ours = p_alive(BgNbdParams(r=0.5, alpha=40.0, a=0.6, b=4.0), x, t_x, T)
    assert np.max(np.abs(ours - reference.conditional_probability_alive(x, t_x, T))) <= 1e-9


def test_p_alive_is_exact_for_a_century_of_daily_purchases():
    x, century = 36_000, 36_500.0
    # last purchase today: only the dropout odds a/(b+x-1) remain; a century ago: certainly gone
    assert p_alive(PARAMS, x, century, century) == pytest.approx(1 / (1 + PARAMS.a / (PARAMS.b + x - 1)), rel=1e-15)
    assert p_alive(PARAMS, x, 0.0, century) == 0.0
    # 100 silent days after near-daily buying for a century: odds of e^99, still no overflow or NaN
    log_odds_dead = (PARAMS.r + x) * math.log1p(100 / (PARAMS.alpha + century - 100)) + math.log(
        PARAMS.a / (PARAMS.b + x - 1)
    )
    assert p_alive(PARAMS, x, century - 100, century) == pytest.approx(1 / (1 + math.exp(log_odds_dead)), rel=1e-9)
    assert np.all(np.isfinite(p_alive(PARAMS, np.full(3, x), np.array([0.0, 1.0, century]), np.full(3, century))))


def test_fit_refuses_members_whose_likelihood_has_no_maximum():
    # every member drops out with almost the same probability: a and b run off to infinity together
    spec = PurchaseSimulation(members=5000, days=548, joining_days=548, r=0.8, alpha=80.0, a=1000.0, b=9000.0, seed=1)
    with pytest.raises(FitDidNotConverge, match=r"did not reach a maximum|ran off to a parameter bound"):
        fit_bgnbd(*summarise_histories(simulate(spec).purchase_days, spec.days))


def test_the_stream_state_summarises_members_as_the_offline_fit_does(tmp_path):
    spec = PurchaseSimulation(members=300, days=200, seed=4)
    histories = simulate(spec)
    rules = CustomerRules()
    states: dict[str, CustomerState] = {}
    for txn in receipts(histories):
        member = txn.member_id or ""
        states[member], _ = observe(states.get(member) or CustomerState(member), txn, txn.ts, rules, None)
    as_of = dt.datetime.combine(spec.start + dt.timedelta(days=spec.days), dt.time(12), dt.UTC)
    from_states = fit_from_states(states.values(), as_of)
    assert from_states == fit_from_histories(histories.purchase_days, spec.days)

    path = tmp_path / "churn" / "bgnbd.json"
    fitted = FittedParams(params=from_states, as_of=as_of.date(), members=len(states), fitted_at=as_of)
    save_params(path, fitted)
    assert load_params(path) == fitted and not math.isnan(load_params(path).params.alpha)
