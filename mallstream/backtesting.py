"""``mallstream backtest``: history from a replay file, the report as a table and as a plot.

The replay itself is :func:`mallstream.streams.core.backtest.backtest` (pure).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
from tabulate import tabulate

from .streams.core.backtest import BacktestReport, RuleOutcome
from .streams.records import InvalidEvent, PosTransaction, decode

COLUMNS = ("points_issued", "vouchers_issued", "vouchers_redeemed", "discounts", "rebates", "parking_waived")


def with_members(receipts: Iterable[PosTransaction]) -> Iterator[PosTransaction]:
    """Receipts with returns and voids stamped with their sale's member, as the hub's router does."""
    owner: dict[str, str] = {}
    for txn in receipts:
        member = txn.member_id or owner.get(txn.original_txn_id or "")
        if member is None:
            continue
        owner[txn.txn_id] = member
        yield msgspec.structs.replace(txn, member_id=member) if txn.member_id is None else txn


def read_receipts(path: Path) -> list[PosTransaction]:
    """The receipts of a JSON-lines file; other event types and lines that do not decode are skipped."""
    found = []
    with path.open("rb") as handle:
        for line in handle:
            if b'"pos_transaction"' not in line:
                continue
            try:
                found.append(decode(PosTransaction, line.strip()))
            except InvalidEvent:
                continue
    return list(with_members(found))


def _money(cents: int) -> str:
    return f"{cents / 100:,.2f}" if cents % 100 else f"{cents // 100:,}.00"


def render_backtest(report: BacktestReport) -> str:
    """Per rule: the current and proposed outcomes side by side, then the total cost of each."""
    rows = []
    for rule in sorted(report.current.by_rule.keys() | report.proposed.by_rule.keys()):
        for label, book in (("current", report.current), ("proposed", report.proposed)):
            outcome = book.by_rule.get(rule, RuleOutcome())
            rows.append(
                [
                    rule,
                    label,
                    outcome.points_issued,
                    outcome.vouchers_issued,
                    _money(outcome.vouchers_redeemed),
                    _money(outcome.discounts),
                    _money(outcome.rebates),
                    _money(outcome.parking_waived),
                    _money(outcome.cost(report.point_value_cents)),
                ]
            )
    table = tabulate(
        rows,
        headers=["rule", "rules", "points", "vouchers", "redeemed", "discounts", "rebates", "parking waived", "cost"],
        colalign=("left", "left") + ("right",) * 7,
        disable_numparse=True,
    )
    current, proposed = report.current, report.proposed
    change = proposed.cost - current.cost
    return (
        f"{report.transactions:,} receipts; a point costs {report.point_value_cents} cent(s)\n{table}\n\n"
        f"current  {current.version}: cost {_money(current.cost)}, {current.rejected} receipts rejected\n"
        f"proposed {proposed.version}: cost {_money(proposed.cost)}, {proposed.rejected} receipts rejected\n"
        f"change: {'+' if change >= 0 else '-'}{_money(abs(change))}"
    )


def plot_backtest(report: BacktestReport, path: Path) -> None:
    """Cost per rule, current beside proposed, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = sorted(report.current.by_rule.keys() | report.proposed.by_rule.keys())
    costs = {
        label: [book.by_rule.get(rule, RuleOutcome()).cost(report.point_value_cents) / 100 for rule in rules]
        for label, book in (("current", report.current), ("proposed", report.proposed))
    }
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(rules) + 2), 4.5))
    width = 0.4
    for offset, (label, values) in zip((-width / 2, width / 2), costs.items(), strict=False):
        axes.bar([i + offset for i in range(len(rules))], values, width, label=label)
    axes.set_xticks(range(len(rules)), rules, rotation=30, ha="right")
    axes.set_ylabel("cost (currency units)")
    axes.set_title(
        f"Backtest over {report.transactions:,} receipts: cost by rule "
        f"({_money(report.current.cost)} now, {_money(report.proposed.cost)} proposed)"
    )
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
