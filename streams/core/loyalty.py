"""Points on a member card: the first loyalty rule, as a pure function.

``apply_transaction(state, txn, rules)`` returns the new member state and the
ledger entries to emit. It never does I/O, so it runs the same inside a faust
agent, in a test, or in a benchmark loop.

Exactly once per ``txn_id``: the state remembers what each receipt did to the
card. A receipt seen again changes nothing and re-emits the entries it produced
the first time, marked ``replayed``; downstream they are dropped if already
stored, and restored if they were lost in a crash between the state write and
the ledger write.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import msgspec

from ..records import LedgerEntry, PosTransaction

POINTS = "points"


class Applied(msgspec.Struct, array_like=True, frozen=True):
    """What one receipt did to the points account: kept so a re-delivery repeats it exactly."""

    delta: int
    balance_after: int


class MemberState(msgspec.Struct):
    """Everything the stream knows about one member card."""

    member_id: str
    points: int = 0
    receipts: dict[str, Applied] = {}
    first_purchase: str | None = None
    last_purchase: str | None = None

    def balances(self) -> dict[str, int]:
        return {POINTS: self.points}


@dataclass(frozen=True, slots=True)
class PointsRules:
    """Points per currency unit, by store; stores not listed earn ``default_rate``."""

    default_rate: Decimal = Decimal(1)
    store_rates: dict[str, Decimal] | None = None

    def rate(self, store_id: str) -> Decimal:
        if self.store_rates is None:
            return self.default_rate
        return self.store_rates.get(store_id, self.default_rate)


def earned_points(amount: Decimal, rate: Decimal) -> int:
    """points = floor(amount x rate), exactly (no binary floats)."""
    return int((amount * rate).to_integral_value(rounding=ROUND_FLOOR))


def _points_delta(state: MemberState, txn: PosTransaction, rules: PointsRules) -> int:
    if txn.kind == "sale":
        return earned_points(txn.total, rules.rate(txn.store_id))
    if txn.kind == "void":
        original = state.receipts.get(txn.original_txn_id or "")
        return -original.delta if original else 0
    # a return gives back the points of the returned amount, never more than the sale earned
    returned = earned_points(txn.total, rules.rate(txn.store_id))
    original = state.receipts.get(txn.original_txn_id or "")
    if original is not None:
        returned = min(returned, original.delta)
    return -returned


def apply_transaction(
    state: MemberState, txn: PosTransaction, rules: PointsRules, mall_id: str
) -> tuple[MemberState, list[LedgerEntry]]:
    """Apply one receipt to a member's card; return the new state and the ledger entries.

    The input state is not modified.
    """
    seen = state.receipts.get(txn.txn_id)
    if seen is not None:
        return state, [_entry(state.member_id, txn, mall_id, seen, replayed=True)]
    delta = _points_delta(state, txn, rules)
    applied = Applied(delta=delta, balance_after=state.points + delta)
    day = txn.business_day.isoformat()
    new_state = msgspec.structs.replace(
        state,
        points=applied.balance_after,
        receipts={**state.receipts, txn.txn_id: applied},
        first_purchase=min(filter(None, (state.first_purchase, day))),
        last_purchase=max(filter(None, (state.last_purchase, day))),
    )
    return new_state, [_entry(state.member_id, txn, mall_id, applied, replayed=False)]


def _entry(member_id: str, txn: PosTransaction, mall_id: str, applied: Applied, replayed: bool) -> LedgerEntry:
    return LedgerEntry(
        entry_id=f"{txn.txn_id}:{POINTS}",
        mall_id=mall_id,
        member_id=member_id,
        account=POINTS,
        delta=applied.delta,
        balance_after=applied.balance_after,
        cause=f"pos_{txn.kind}",
        txn_id=txn.txn_id,
        store_id=txn.store_id,
        ts=txn.ts,
        business_day=txn.business_day,
        replayed=replayed,
    )
