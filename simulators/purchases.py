"""Simulated months of member purchases, for the churn tests and benchmarks.

Members behave as BG/NBD says: each buys as a Poisson process of rate
``lambda ~ Gamma(r, alpha)`` (per day) from their first purchase on, and after
each purchase drops out for good with probability ``p ~ Beta(a, b)``. On top of
that, a known set of members (``dropper_share``) cuts their rate by
``drop_factor`` on a known day, which is what churn signals must find, and a
share of purchases (``burst_share``) is followed by another within 1-3 days.

Seeded numpy throughout, and vectorised over members (one loop step per
purchase number), so 100,000 members take well under a second.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from mallstream.streams.records import PosLine, PosTransaction

from .pos import CATALOGUE

CHINA = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True)
class PurchaseSimulation:
    """Who the members are and how long they are watched; days count from ``start``."""

    members: int = 1000
    days: int = 365
    joining_days: int = 90
    r: float = 0.8
    alpha: float = 12.0
    a: float = 0.6
    b: float = 3.0
    dropper_share: float = 0.0
    drop_day: int = 180
    drop_factor: float = 0.0
    burst_share: float = 0.0
    start: dt.date = dt.date(2026, 1, 1)
    seed: int = 7


@dataclass(frozen=True)
class PurchaseHistories:
    """Each member's distinct purchase days (offsets from ``start``) and the truth behind them."""

    simulation: PurchaseSimulation
    purchase_days: list[NDArray[np.int64]]
    rate: NDArray[np.float64]
    dropped_out: NDArray[np.bool_]
    dropout_day: NDArray[np.float64]
    droppers: NDArray[np.bool_]


def simulate(spec: PurchaseSimulation) -> PurchaseHistories:
    """Purchase histories for ``spec.members`` members, the same for the same spec."""
    rng = np.random.default_rng(spec.seed)
    n = spec.members
    rate = rng.gamma(spec.r, 1.0 / spec.alpha, n)
    dropout_p = rng.beta(spec.a, spec.b, n)
    droppers = rng.random(n) < spec.dropper_share
    now = rng.uniform(0.0, spec.joining_days, n)
    buyers, moments = [np.arange(n)], [now.copy()]
    active = np.ones(n, dtype=bool)
    dropout_day = np.full(n, np.inf)
    first = True
    while active.any():
        idx = np.flatnonzero(active)
        # BG/NBD lets a member drop out after each repeat purchase, never right after the first
        leaves = (rng.random(len(idx)) < dropout_p[idx]) & (not first)
        first = False
        dropout_day[idx[leaves]] = now[idx[leaves]]
        idx = idx[~leaves]
        gap = rng.exponential(1.0, len(idx)) / rate[idx]
        if spec.burst_share:
            bursts = rng.random(len(idx)) < spec.burst_share
            gap[bursts] = rng.uniform(1.0, 4.0, bursts.sum())
        crossing = droppers[idx] & (now[idx] < spec.drop_day) & (now[idx] + gap >= spec.drop_day)
        # memoryless: from the drop day on, the wait restarts at the lowered rate
        slowed = rate[idx[crossing]] * spec.drop_factor
        with np.errstate(divide="ignore"):
            gap[crossing] = spec.drop_day - now[idx[crossing]] + rng.exponential(1.0, crossing.sum()) / slowed
        now[idx] += gap
        active[:] = False
        active[idx] = now[idx] < spec.days
        buyers.append(idx[active[idx]])
        moments.append(now[buyers[-1]])
    pairs = np.unique(
        np.column_stack([np.concatenate(buyers), np.floor(np.concatenate(moments))]).astype(np.int64), axis=0
    )
    purchase_days = np.split(pairs[:, 1], np.searchsorted(pairs[:, 0], np.arange(1, n)))
    return PurchaseHistories(
        simulation=spec,
        purchase_days=purchase_days,
        rate=rate,
        dropped_out=np.isfinite(dropout_day),
        dropout_day=dropout_day,
        droppers=droppers,
    )


def member_id(index: int) -> str:
    return f"M{index:07d}"


def receipts(histories: PurchaseHistories, seed: int = 11) -> Iterator[PosTransaction]:
    """One sale receipt per member purchase day, in time order, with lines from the POS catalogue.

    Each member favours a few brands (Dirichlet weights), so preferences have something to find.
    """
    rng = np.random.default_rng(seed)
    spec = histories.simulation
    brands = [(category, brand, prices) for category, names, prices in CATALOGUE for brand in names]
    taste = rng.dirichlet(np.full(len(brands), 0.3), spec.members)
    events = sorted((int(day), member) for member, days in enumerate(histories.purchase_days) for day in days)
    for seq, (day, member) in enumerate(events):
        business_day = spec.start + dt.timedelta(days=day)
        ts = dt.datetime.combine(business_day, dt.time(int(rng.integers(10, 22)), int(rng.integers(0, 60))), CHINA)
        lines = []
        for line_no in range(int(rng.integers(1, 4))):
            category, brand, (low, high) = brands[int(rng.choice(len(brands), p=taste[member]))]
            price = Decimal(int(rng.uniform(float(low), float(high)) * 100)) / 100
            qty = int(rng.integers(1, 3))
            lines.append(
                PosLine(
                    sku=f"{brand}-{line_no}",
                    qty=Decimal(qty),
                    unit_price=price,
                    amount=price * qty,
                    category=category,
                    brand=brand,
                )
            )
        yield PosTransaction(
            txn_id=f"sim-{seq}",
            store_id="S1",
            workstation_id="T1",
            seq=seq,
            ts=ts,
            business_day=business_day,
            kind="sale",
            total=sum((line.amount for line in lines), Decimal(0)),
            lines=lines,
            member_id=member_id(member),
        )
