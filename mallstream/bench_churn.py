"""Measuring the churn core: signal quality on simulated histories, update cost, fit time, state memory.

The functions return numbers and leave printing to the caller (tests assert on
them; ``mallstream bench`` can report them).
"""

from __future__ import annotations

import datetime as dt
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import numpy as np

from .churn_fit import fit_from_histories
from .simulators.purchases import CHINA, PurchaseHistories, PurchaseSimulation, member_id, receipts, simulate
from .streams.core.bgnbd import BgNbdParams
from .streams.core.customers import ChurnSignal, CustomerRules, CustomerState, observe, tick


@dataclass(frozen=True)
class Replay:
    """Every member's final state and every signal, after streaming a simulation's receipts."""

    states: dict[str, CustomerState]
    signals: list[ChurnSignal]


def replay(
    histories: PurchaseHistories, rules: CustomerRules, params: BgNbdParams | None, tick_every_days: int = 7
) -> Replay:
    """Feed the receipts in time order, ticking every member at the end of every ``tick_every_days``-th day.

    Ticked days are those whose ordinal is ``tick_every_days - 1`` modulo ``tick_every_days``, as in the worker.
    """
    start = histories.simulation.start
    states: dict[str, CustomerState] = {}
    signals: list[ChurnSignal] = []
    by_day: dict[int, list] = defaultdict(list)
    for txn in receipts(histories):
        by_day[(txn.business_day - start).days].append(txn)
    for day in range(histories.simulation.days):
        for txn in by_day.get(day, ()):
            member = txn.member_id or ""
            states[member], emitted = observe(states.get(member) or CustomerState(member), txn, txn.ts, rules, params)
            signals += emitted
        date = start + dt.timedelta(days=day)
        if date.toordinal() % tick_every_days == tick_every_days - 1:
            end_of_day = dt.datetime.combine(date, dt.time(23, 59, 59), CHINA)
            for member, state in states.items():
                states[member], emitted = tick(state, end_of_day, rules, params)
                signals += emitted
    return Replay(states=states, signals=signals)


@dataclass(frozen=True)
class SignalQuality:
    """How members flagged around a simulation's drop day match those who really stopped buying."""

    precision: float
    recall: float
    steady_flagged: float
    flagged: int
    detectable: int


def signal_quality(histories: PurchaseHistories, signals: Iterable[ChurnSignal], detect_within_days: int) -> SignalQuality:
    """Score the members whose alert level is raised at some time in ``[drop day, drop day + detect_within_days]``.

    A flag is right when the member had dropped their rate or dropped out for
    good by the time it was raised (or by the drop day, for a flag raised
    earlier and still standing). Recall is over the known droppers that a
    purchase model can see: alive at the drop day, with a repeat purchase
    before it (BG/NBD deems a member with one purchase alive whatever the
    wait). ``steady_flagged`` is the share of members who never stopped but were flagged.
    """
    spec = histories.simulation
    drop = spec.start + dt.timedelta(days=spec.drop_day)
    until = drop + dt.timedelta(days=detect_within_days)
    index = {member_id(i): i for i in range(spec.members)}
    raised: dict[int, dt.date] = {}
    for signal in sorted(signals, key=lambda s: s.ts):
        member, day = index[signal.member_id], signal.ts.date()
        if day > until:
            continue
        if signal.kind == "recovered":
            if day < drop:
                raised.pop(member, None)
        elif member not in raised:
            raised[member] = max(day, drop)
    stopped_by = np.where(histories.droppers, spec.drop_day, histories.dropout_day)
    right = {m for m, day in raised.items() if stopped_by[m] <= (day - spec.start).days}
    repeat_before_drop = np.array([np.count_nonzero(days < spec.drop_day) >= 2 for days in histories.purchase_days])
    detectable = np.flatnonzero(histories.droppers & (histories.dropout_day >= spec.drop_day) & repeat_before_drop)
    steady = ~histories.droppers & ~histories.dropped_out
    return SignalQuality(
        precision=len(right) / max(len(raised), 1),
        recall=len(right.intersection(detectable.tolist())) / max(len(detectable), 1),
        steady_flagged=sum(1 for m in raised if steady[m]) / max(int(steady.sum()), 1),
        flagged=len(raised),
        detectable=len(detectable),
    )


def update_cost_us(members: int = 2000, seed: int = 7) -> float:
    """Mean microseconds of one ``observe`` (state update, P(alive), stage and signal) over a simulation's receipts."""
    histories = simulate(PurchaseSimulation(members=members, days=365, seed=seed))
    rules = CustomerRules()
    params = BgNbdParams(r=0.8, alpha=12.0, a=0.6, b=3.0)
    txns = list(receipts(histories))
    states: dict[str, CustomerState] = {}
    started = time.perf_counter()
    for txn in txns:
        member = txn.member_id or ""
        states[member], _ = observe(states.get(member) or CustomerState(member), txn, txn.ts, rules, params)
    return (time.perf_counter() - started) / len(txns) * 1e6


def fit_seconds(members: int = 100_000, seed: int = 7) -> float:
    """Wall time of the offline BG/NBD fit on ``members`` simulated members' histories."""
    histories = simulate(PurchaseSimulation(members=members, days=365, seed=seed))
    started = time.perf_counter()
    fit_from_histories(histories.purchase_days, as_of_day=histories.simulation.days)
    return time.perf_counter() - started


@dataclass(frozen=True)
class StateMemory:
    """Member state for ``members`` members, measured on a sample and scaled."""

    members: int
    msgpack_bytes: int
    python_bytes: int


def state_memory(sample_members: int = 5000, per_members: int = 100_000, seed: int = 7) -> StateMemory:
    """Msgpack size and Python heap of member states after a year of simulated receipts, scaled to ``per_members``.

    The Python figure is what decoding every state's msgpack allocates (tracemalloc), as a table holding them would.
    """
    histories = simulate(PurchaseSimulation(members=sample_members, days=365, seed=seed))
    states = replay(histories, CustomerRules(), BgNbdParams(r=0.8, alpha=12.0, a=0.6, b=3.0), tick_every_days=30).states
    blobs = [msgspec.msgpack.encode(state) for state in states.values()]
    decoder = msgspec.msgpack.Decoder(CustomerState)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    decoded = [decoder.decode(blob) for blob in blobs]
    python_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    scale = per_members / len(decoded)
    return StateMemory(
        members=per_members, msgpack_bytes=int(sum(map(len, blobs)) * scale), python_bytes=int(python_bytes * scale)
    )
