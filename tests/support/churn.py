"""The churn core replayed over simulated purchase histories, and its signals scored against their known truth.

The core's own tests and the worker's pipeline test both score signals this way, the latter
also comparing the worker's signals with the core's replay of the same receipts.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mallstream.simulators.purchases import CHINA, PurchaseHistories, member_id, receipts
from mallstream.streams.core.bgnbd import BgNbdParams
from mallstream.streams.core.customers import ChurnSignal, CustomerRules, CustomerState, observe, tick


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


def signal_quality(
    histories: PurchaseHistories, signals: Iterable[ChurnSignal], detect_within_days: int
) -> SignalQuality:
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
