"""`mallstream report customers`: the value pyramid and the lifecycle counts, from the dashboards' own views.

Both read the latest snapshot of every member (``customer_pyramid`` and
``customer_lifecycle`` in ClickHouse), so a report and a dashboard panel never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .settings import Settings

CLASSES = ("A", "B", "C", "D")
STAGES = ("new", "developing", "mature", "declining", "churned", "no purchase")

PYRAMID_SQL = """
    SELECT value_class, members, spend_cents, member_share, spend_share FROM {db}.customer_pyramid
    ORDER BY value_class SETTINGS output_format_json_quote_64bit_integers = 0"""
LIFECYCLE_SQL = """
    SELECT stage, members, spend_cents FROM {db}.customer_lifecycle
    SETTINGS output_format_json_quote_64bit_integers = 0"""


def customer_report(settings: Settings) -> tuple[list[dict], list[dict]]:
    """The pyramid (every class, A to D) and the lifecycle counts (every stage, in lifecycle order)."""
    from .querying import rows

    pyramid = {row["value_class"]: row for row in rows(settings, PYRAMID_SQL)}
    stages = {row["stage"]: row for row in rows(settings, LIFECYCLE_SQL)}
    empty = {"members": 0, "spend_cents": 0, "member_share": 0.0, "spend_share": 0.0}
    return (
        [{"value_class": name, **{**empty, **pyramid.get(name, {})}} for name in CLASSES],
        [{"stage": name, "members": stages.get(name, {}).get("members", 0)} for name in STAGES],
    )


def render_customers(pyramid: Sequence[dict], lifecycle: Sequence[dict]) -> str:
    """Two tables for people: spend share and head count per class, members per stage."""
    from tabulate import tabulate

    classes = [{"class": row["value_class"], "members": row["members"], "member share": f"{row['member_share']:.1%}",
                "spend": row["spend_cents"] / 100, "spend share": f"{row['spend_share']:.1%}"}
               for row in pyramid]
    # spend as a number with its format: tabulate re-reads a formatted string ("1,038,076.84" -> 1.03808e+06)
    return (tabulate(classes, headers="keys", intfmt=",", floatfmt=",.2f", tablefmt="simple") + "\n\n"
            + tabulate(lifecycle, headers="keys", intfmt=",", tablefmt="simple"))


def plot_customers(pyramid: Sequence[dict], lifecycle: Sequence[dict], path: Path) -> None:
    """Head-count and spend shares per class beside members per stage, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (shares, stages) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    positions = range(len(pyramid))
    shares.bar([p - 0.2 for p in positions], [row["member_share"] * 100 for row in pyramid], 0.4, label="members")
    shares.bar([p + 0.2 for p in positions], [row["spend_share"] * 100 for row in pyramid], 0.4, label="spend")
    shares.set_xticks(list(positions), [row["value_class"] for row in pyramid])
    shares.set_ylabel("% of all")
    shares.set_title("value pyramid")
    shares.legend()
    stages.bar([row["stage"] for row in lifecycle], [row["members"] for row in lifecycle])
    stages.set_ylabel("members")
    stages.set_title("lifecycle")
    stages.tick_params(axis="x", labelrotation=20)
    figure.savefig(path, dpi=110)
    plt.close(figure)
