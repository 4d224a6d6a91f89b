"""``mallstream bench``: figures for the parts that do not need a broker.

(a) the pure rule core, receipts/s; (d) the ClickHouse sink on the embedded
engine, rows/s, including its duplicate check and the materialized view.
End-to-end figures come from ``mallstream replay --wait`` against a running worker.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from .settings import ClickHouse
from .simulators.pos import PosDay, receipts
from .sinks.clickhouse import SourcePosition, TableSink
from .sinks.warehouse import open_warehouse
from .sinks.schema import LEDGER_TABLE
from .streams.core.loyalty import MemberState, PointsRules, apply_transaction


def bench_rule_core(count: int) -> float:
    """Receipts per second through the points rule, state kept in a dict as the agent keeps it."""
    day = PosDay(stores=("S101", "S201", "SB01"), members=5000)
    txns = list(tqdm(receipts(day, count), total=count, desc="generating receipts", leave=False))
    rules = PointsRules()
    states: dict[str, MemberState] = {}
    started = time.perf_counter()
    for txn in txns:
        member = txn.member_id or ""
        state = states.get(member) or MemberState(member_id=member)
        states[member], _ = apply_transaction(state, txn, rules, "mall")
    return count / (time.perf_counter() - started)


def bench_sink(rows: int, batch_rows: int) -> float:
    """Rows per second into the embedded engine through TableSink (check + insert + view)."""
    with tempfile.TemporaryDirectory() as scratch:
        warehouse = open_warehouse(ClickHouse(path=Path(scratch) / "ch"))
        warehouse.migrate()
        sink = TableSink(warehouse, LEDGER_TABLE.name, LEDGER_TABLE.columns, batch_rows=batch_rows)
        day = PosDay(stores=("S101",), members=5000)
        entries = []
        states: dict[str, MemberState] = {}
        for txn in receipts(day, rows):
            state = states.get(txn.member_id or "") or MemberState(member_id=txn.member_id or "")
            states[txn.member_id or ""], out = apply_transaction(state, txn, PointsRules(), "mall")
            entries.extend(LEDGER_TABLE.row(e) for e in out)
        started = time.perf_counter()
        for offset, row in enumerate(tqdm(entries, desc=f"sink, batches of {batch_rows}", leave=False)):
            sink.add(row, SourcePosition("ledger", 0, offset), lambda: None)
            if sink.due:
                sink.flush()
        sink.flush()
        elapsed = time.perf_counter() - started
        warehouse.close()
    return len(entries) / elapsed


def run(count: int) -> list[tuple[str, str]]:
    return [
        ("(a) rule core, receipts/s", f"{bench_rule_core(count):,.0f}"),
        ("(d) ClickHouse sink rows/s, batches of 5,000", f"{bench_sink(count, 5_000):,.0f}"),
        ("(d) ClickHouse sink rows/s, batches of 50,000", f"{bench_sink(count, 50_000):,.0f}"),
    ]
