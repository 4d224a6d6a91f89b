"""``bench_engine(count)``: receipts per second through the pure loyalty engine.

Uses the example rule file (every rule kind switched on) and a simulated mall day
of receipts, returns included; cards are kept in a dict the way the worker's
table keeps them. Generation is outside the timed loop.
"""

from __future__ import annotations

import time
from pathlib import Path

from mallstream.backtesting import with_members
from mallstream.simulators.pos import PosDay, receipts
from mallstream.streams.core.accounts import MemberCard
from mallstream.streams.core.engine import evaluate
from mallstream.streams.core.rules import RuleFile

EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "config" / "rules.example.yaml"


def bench_engine(count: int, rules_path: Path = EXAMPLE_RULES) -> float:
    """Receipts evaluated per second, member ids stamped on anonymous returns as the router does."""
    rules = RuleFile(rules_path).current()
    day = PosDay(stores=("S101", "S201", "SB01"), members=5000)
    txns = list(with_members(receipts(day, count)))
    cards: dict[str, MemberCard] = {}
    started = time.perf_counter()
    for txn in txns:
        member = txn.member_id or ""
        cards[member], _ = evaluate(cards.get(member), txn, rules, txn.ts)
    return len(txns) / (time.perf_counter() - started)
