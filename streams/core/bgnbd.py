"""The BG/NBD model (Fader, Hardie & Lee 2005): is a member still "alive"?

A member buys as a Poisson process of rate ``lambda ~ Gamma(r, alpha)`` and,
after each purchase, drops out for good with probability ``p ~ Beta(a, b)``.
Everything is in days and uses the summary the model needs:

- ``x``: repeat purchase days (distinct purchase days after the first);
- ``t_x``: days from the first to the last purchase;
- ``T``: days from the first purchase to "now".

:func:`p_alive` is the closed form of ``lifetimes``' ``BetaGeoFitter.conditional_probability_alive``
and takes scalars or numpy arrays. :func:`fit_bgnbd` maximises the published
log-likelihood offline; it works on log-parameters so the optimiser never
leaves the positive orthant, and on the unique ``(x, t_x, T)`` rows weighted by
their count, which is what makes 100,000 members a fraction of a second.
"""

from __future__ import annotations

from typing import overload

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, zeta


class BgNbdParams(msgspec.Struct, frozen=True):
    """Fitted population parameters: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_array(self) -> NDArray[np.float64]:
        return np.array([self.r, self.alpha, self.a, self.b])


@overload
def p_alive(params: BgNbdParams, x: float, t_x: float, T: float) -> float: ...
@overload
def p_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float | NDArray[np.float64]: ...
def p_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float | NDArray[np.float64]:
    """P(member still alive | x, t_x, T); always 1 for a member with no repeat purchase.

    Computed as ``1 / (1 + exp(log_odds))`` through ``logaddexp``, so members
    whose odds overflow a float come out as 0 instead of a warning and NaN.
    """
    x, t_x = np.asarray(x, dtype=np.float64), np.asarray(t_x, dtype=np.float64)
    # log1p keeps the ratio (alpha+T)/(alpha+t_x) exact when it is close to 1 and multiplied by a large r+x
    log_odds_dead = (params.r + x) * np.log1p((np.asarray(T) - t_x) / (params.alpha + t_x)) + np.log(
        params.a / (params.b + np.maximum(x, 1.0) - 1.0)
    )
    alive = np.where(x > 0, np.exp(-np.logaddexp(0.0, log_odds_dead)), 1.0)
    return float(alive) if alive.ndim == 0 else alive


# distinct (x, t_x, T) rows and the share of members on each
_Rows = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def _summary_rows(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> _Rows:
    """The distinct (x, t_x, T) rows and the share of members on each."""
    rows = np.column_stack([np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)])
    if len(rows) == 0:
        raise ValueError("cannot fit BG/NBD on no members")
    if np.any(rows < 0) or np.any(rows[:, 1] > rows[:, 2]) or np.any((rows[:, 0] == 0) & (rows[:, 1] > 0)):
        raise ValueError("every member needs x >= 0 and 0 <= t_x <= T, with t_x = 0 when x = 0")
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return unique[:, 0], unique[:, 1], unique[:, 2], counts / counts.sum()


class _Surface:
    """The mean log-likelihood per member at one point in log-parameter space, with its derivatives.

    LL = ln G(r+x) - ln G(r) + ln B(a, b+x) - ln B(a, b)
         + ln[ (alpha/(alpha+T))^r (alpha+T)^-x + 1{x>0} a/(b+x-1) (alpha/(alpha+t_x))^r (alpha+t_x)^-x ]
    (Fader, Hardie & Lee 2005, eq. 6, with their ``alpha^r`` taken into the bracket). ``betaln`` and
    ``log1p`` keep every term small where a, b or alpha run large, so the optimiser sees the surface
    rather than rounding noise. The Hessian is what lets the fit prove it stopped at a maximum.
    """

    def __init__(self, log_params: NDArray[np.float64], rows: _Rows) -> None:
        x, t_x, T, self.share = rows
        self.params = np.exp(log_params)
        r, alpha, a, b = self.params
        self.rows = rows
        self.buys_on = b + np.maximum(x, 1.0) - 1.0
        # the bracket's two terms: still alive at T, or dropped out right after the last purchase at t_x
        log_alive = -r * np.log1p(T / alpha) - x * np.log(alpha + T)
        log_dropped = np.where(
            x > 0, np.log(a / self.buys_on) - r * np.log1p(t_x / alpha) - x * np.log(alpha + t_x), -np.inf
        )
        log_bracket = np.logaddexp(log_alive, log_dropped)
        per_row = gammaln(r + x) - gammaln(r) + betaln(a, b + x) - betaln(a, b) + log_bracket
        self.value = float(self.share @ per_row)
        self.share_alive = np.exp(log_alive - log_bracket)
        self.share_dropped = 1.0 - self.share_alive
        # gradients in (r, alpha, a, b) of each bracket term, per row
        zero = np.zeros_like(x)
        self.alive_grad = np.stack([-np.log1p(T / alpha), r / alpha - (r + x) / (alpha + T), zero, zero])
        self.dropped_grad = np.stack(
            [-np.log1p(t_x / alpha), r / alpha - (r + x) / (alpha + t_x), 1.0 / a + zero, -1.0 / self.buys_on]
        )
        outside_grad = np.stack(
            [
                digamma(r + x) - digamma(r),
                zero,
                digamma(a + b) - digamma(a + b + x),
                digamma(a + b) + digamma(b + x) - digamma(b) - digamma(a + b + x),
            ]
        )
        grad = outside_grad + self.share_alive * self.alive_grad + self.share_dropped * self.dropped_grad
        self.params_gradient = grad @ self.share
        # d/d ln p = p d/dp
        self.gradient = self.params_gradient * self.params

    def hessian(self) -> NDArray[np.float64]:
        """Second derivatives in the log-parameters; d2 ln(e^u + e^v) = s_u d2u + s_v d2v + s_u s_v (du-dv)(du-dv)^T."""
        x, t_x, T, share = self.rows
        r, alpha, a, b = self.params
        alive, dropped = self.share_alive, self.share_dropped
        hess = np.zeros((4, 4, len(x)))
        hess[0, 0] = zeta(2, r + x) - zeta(2, r)
        hess[0, 1] = hess[1, 0] = alive * T / (alpha * (alpha + T)) + dropped * t_x / (alpha * (alpha + t_x))
        hess[1, 1] = -r / alpha**2 + alive * (r + x) / (alpha + T) ** 2 + dropped * (r + x) / (alpha + t_x) ** 2
        trigamma_ab = zeta(2, a + b) - zeta(2, a + b + x)
        hess[2, 2] = trigamma_ab - dropped / a**2
        hess[2, 3] = hess[3, 2] = trigamma_ab
        hess[3, 3] = trigamma_ab + zeta(2, b + x) - zeta(2, b) + dropped / self.buys_on**2
        spread = self.alive_grad - self.dropped_grad
        hess += alive * dropped * spread[:, None] * spread[None, :]
        # typed here: numpy's stubs give np.outer as Any, and scipy.special is untyped
        log_hess: NDArray[np.float64] = (hess @ share) * np.outer(self.params, self.params) + np.diag(self.gradient)
        return log_hess


def log_likelihood(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float:
    """Total BG/NBD log-likelihood of the members' summaries under ``params``."""
    rows = _summary_rows(x, t_x, T)
    return _Surface(np.log(params.as_array()), rows).value * len(np.atleast_1d(x))


class FitDidNotConverge(RuntimeError):
    """The optimiser stopped away from a maximum of the likelihood."""


# A fit is done when a further Newton step could add at most this to the mean log-likelihood per member.
REMAINING_GAIN_TOLERANCE = 1e-12
# Log-parameters stay within e^-LOG_BOUND..e^LOG_BOUND; a fit that ends on a bound has no interior maximum.
LOG_BOUND = 16.0


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, initial: BgNbdParams | None = None) -> BgNbdParams:
    """Maximum-likelihood parameters for the members' (x, t_x, T) summaries.

    Works on the mean log-likelihood per member over log-parameters. L-BFGS-B
    (bounded, so it cannot wander off along the flat a-b ridge) gets near the
    top; Newton steps on the analytic Hessian finish the climb, since quasi-Newton
    methods stop by their own tolerances, short of it or claiming failure at it.
    Then the result is checked rather than trusted: the Hessian must be negative
    definite and one more Newton step worth at most ``REMAINING_GAIN_TOLERANCE``,
    else :class:`FitDidNotConverge`.
    """
    rows = _summary_rows(x, t_x, T)
    surfaces: dict[bytes, _Surface] = {}

    def surface(log_params: NDArray[np.float64]) -> _Surface:
        key = log_params.tobytes()
        if key not in surfaces:
            surfaces.clear()
            surfaces[key] = _Surface(log_params, rows)
        return surfaces[key]

    def downhill(log_params: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        at = surface(log_params)
        return -at.value, -at.gradient

    start = initial or BgNbdParams(r=1.0, alpha=max(float(rows[3] @ rows[2]), 1.0), a=1.0, b=1.0)
    climb = minimize(
        downhill,
        np.log(start.as_array()),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * 4,
        options={"maxiter": 2000},
    )
    polish = minimize(
        downhill,
        climb.x,
        jac=True,
        hess=lambda log_params: -surface(log_params).hessian(),
        method="trust-exact",
        options={"gtol": 1e-12, "maxiter": 100},
    )
    log_params = polish.x if polish.fun <= climb.fun else climb.x
    _check_maximum(surface(log_params), f"{climb.message}; {polish.message}")
    r, alpha, a, b = np.exp(log_params)
    return BgNbdParams(r=float(r), alpha=float(alpha), a=float(a), b=float(b))


def _check_maximum(at: _Surface, optimiser_said: str) -> None:
    """Raise unless ``at`` is a strict local maximum within ``REMAINING_GAIN_TOLERANCE`` of its top."""
    reached = ", ".join(f"{name}={value:.6g}" for name, value in zip(("r", "alpha", "a", "b"), at.params, strict=False))
    if np.any(np.abs(np.log(at.params)) >= LOG_BOUND - 1e-6):
        raise FitDidNotConverge(
            f"BG/NBD fit ran off to a parameter bound ({reached}): these members' "
            "likelihood has no maximum (dropout or purchase rates look the same for all)"
        )
    try:
        remaining_gain = 0.5 * float(at.gradient @ cho_solve(cho_factor(-at.hessian()), at.gradient))
    except LinAlgError:
        remaining_gain = np.inf
    if not remaining_gain <= REMAINING_GAIN_TOLERANCE:
        raise FitDidNotConverge(
            f"BG/NBD fit did not reach a maximum ({reached}; the mean log-likelihood could "
            f"still rise by {remaining_gain:.2g} per member; optimiser: {optimiser_said})"
        )
