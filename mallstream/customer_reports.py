"""`mallstream report customers` and `report campaigns`, from the dashboards' own views and SQL.

The customer views read the latest snapshot of every member (``customer_pyramid``,
``customer_lifecycle``, ``customer_class_times``, ...), so a report and a dashboard panel never disagree.
``--by`` splits each value class's shopping as the product docs analyse it: by weekday (各类顾客购物日期),
hour (购物时段) and price band (购物价格: spend per unit-price band, returns taken off), and which brands
members favour (单个顾客喜好: members whose top three brands hold the brand, and their spend).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .settings import Settings

CLASSES = ("A", "B", "C", "D")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BRANDS_SHOWN = 20
_NUMBERS = "SETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_decimals = 0"


@dataclass(frozen=True)
class ClassSplit:
    """One of a customer view's arrays split into buckets (weekday, hour, price band) per value class."""

    by: str
    view: str
    array: str
    what: str
    #: spend in cents, shown in currency units; visits are counts
    money: bool = False

    def labels(self, edges: Sequence[Decimal]) -> list[str]:
        if self.by == "weekday":
            return list(WEEKDAYS)
        if self.by == "hour":
            return [f"{hour:02d}:00" for hour in range(24)]
        bounds = [format(edge.normalize(), "f") for edge in edges]
        return [f"< {bounds[0]}", *(f"{low}-{high}" for low, high in itertools.pairwise(bounds)), f"{bounds[-1]} +"]

    def sql(self, edges: Sequence[Decimal]) -> str:
        """One row per bucket with any visits or spend: each class's figure, and its share of that class's total."""

        def figure(name: str) -> str:
            total = f"sumIf(figure, value_class = '{name}')"
            return f"toDecimal64({total}, 2) / 100" if self.money else total

        per_class = ", ".join(f"{figure(name)} AS {name}" for name in CLASSES)
        shares = ", ".join(
            f"round(sumIf(figure, value_class = '{name}') / "
            f"nullIf(sum(sumIf(figure, value_class = '{name}')) OVER (), 0), 4) AS {name}_share"
            for name in CLASSES
        )
        return f"""
            SELECT {self.labels(edges)!r}[bucket] AS {self.by}, {per_class}, {shares}
            FROM {{db}}.{self.view} ARRAY JOIN {self.array} AS figure, arrayEnumerate({self.array}) AS bucket
            GROUP BY bucket HAVING sum(figure) != 0 ORDER BY bucket
            {_NUMBERS}"""

    def columns(self) -> tuple[str, ...]:
        return (self.by, *CLASSES, *(f"{name}_share" for name in CLASSES))


SPLITS = {
    "weekday": ClassSplit("weekday", "customer_class_times", "weekday_visits", "visits (receipts)"),
    "hour": ClassSplit("hour", "customer_class_times", "hour_visits", "visits (receipts)"),
    "price-band": ClassSplit("price_band", "customer_class_price_bands", "price_band_cents", "spend", money=True),
}
BRAND_COLUMNS = ("brand", "fans", "spend", "spend_per_fan")
BRAND_SQL = f"""
    SELECT brand, members AS fans, toDecimal64(spend_cents, 2) / 100 AS spend,
           toDecimal64(spend_cents / members / 100, 2) AS spend_per_fan
    FROM {{db}}.customer_brand_favourites ORDER BY fans DESC, brand LIMIT {BRANDS_SHOWN}
    {_NUMBERS}"""
CUSTOMER_SPLITS = (*SPLITS, "brand")

#: Per campaign in a range of business days: who took part, vouchers issued, their value, what was redeemed
#: and clawed back, and the spend of the receipts that earned them (money in cents).
CAMPAIGN_COLUMNS = (
    "campaign",
    "members_issued",
    "members_redeemed",
    "vouchers_issued",
    "issued",
    "redeemed",
    "clawed",
    "triggering_spend",
    "redeemed_share",
)
COMPOSITION_COLUMNS = ("campaign", "value_class", "lifecycle_stage", "members", "share")


def campaign_sql(mall: str, days: str) -> str:
    """Campaigns whose vouchers moved on the days ``days`` (a condition on ``business_day``) selects.

    Money and vouchers add up over the days of ``campaign_participation``; members are counted once
    over the whole range, from the ledger the view reads.
    """
    cents = "toDecimal64(sum({0}), 2) / 100 AS {1}"
    money = ", ".join(
        cents.format(f"{name}_cents", name) for name in ("issued", "redeemed", "clawed", "triggering_spend")
    )
    return f"""
        SELECT campaign, members_issued, members_redeemed, vouchers_issued, issued, redeemed, clawed, triggering_spend,
               if(issued > 0, round(redeemed / issued, 4), NULL) AS redeemed_share
        FROM (SELECT campaign_id AS campaign, sum(vouchers_issued) AS vouchers_issued, {money}
              FROM {{db}}.campaign_participation WHERE mall_id = {mall} AND {days} GROUP BY campaign) AS p
        LEFT JOIN (SELECT rule_id AS campaign, uniqExactIf(member_id, cause = 'voucher_issued') AS members_issued,
                          uniqExactIf(member_id, cause = 'voucher_redeemed') AS members_redeemed
                   FROM {{db}}.ledger_entries
                   WHERE mall_id = {mall} AND {days} AND cause IN ('voucher_issued', 'voucher_redeemed')
                   GROUP BY campaign) AS m USING (campaign)
        ORDER BY vouchers_issued DESC, campaign
        {_NUMBERS}"""


#: Who the members given each campaign's vouchers are now, by value class and lifecycle stage (all time).
COMPOSITION_SQL = f"""
    SELECT campaign_id AS campaign, value_class, ifNull(lifecycle_stage, 'no purchase') AS lifecycle_stage, members,
           round(members / sum(members) OVER (PARTITION BY campaign), 4) AS share
    FROM {{db}}.campaign_composition ORDER BY campaign, value_class, lifecycle_stage
    {_NUMBERS}"""


def split_sql(by: str, settings: Settings) -> tuple[str, tuple[str, ...]]:
    """The SQL of ``report customers --by`` and the columns it prints."""
    if by == "brand":
        return BRAND_SQL, BRAND_COLUMNS
    split = SPLITS[by]
    return split.sql(settings.customers.price_band_edges), split.columns()


def plot_split(rows: Sequence[dict], by: str, path: Path) -> None:
    """Each class's share per bucket as grouped bars (fans per brand for ``brand``), to a PNG."""
    from .reports import agg_pyplot

    plt = agg_pyplot()
    import numpy as np

    figure, axes = plt.subplots(figsize=(11, 4.5), layout="constrained")
    if by == "brand":
        axes.barh([row["brand"] for row in rows][::-1], [row["fans"] for row in rows][::-1])
        axes.set_xlabel("members whose top three brands hold it")
        axes.set_title("brand fans")
    else:
        split = SPLITS[by]
        labels = [row[split.by] for row in rows]
        width = 0.8 / len(CLASSES)
        for number, name in enumerate(CLASSES):
            axes.bar(
                np.arange(len(rows)) + number * width,
                [(row[f"{name}_share"] or 0) * 100 for row in rows],
                width,
                label=f"class {name}",
            )
        axes.set_xticks(np.arange(len(rows)) + width * (len(CLASSES) - 1) / 2, labels)
        axes.set_ylabel(f"% of the class's {split.what}")
        axes.set_title(f"{split.what} by {by} per value class")
        axes.legend()
    axes.grid(alpha=0.3, axis="y" if by != "brand" else "x")
    figure.savefig(path, dpi=110)
    plt.close(figure)


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

    classes = [
        {
            "class": row["value_class"],
            "members": row["members"],
            "member share": f"{row['member_share']:.1%}",
            "spend": row["spend_cents"] / 100,
            "spend share": f"{row['spend_share']:.1%}",
        }
        for row in pyramid
    ]
    # spend as a number with its format: tabulate re-reads a formatted string ("1,038,076.84" -> 1.03808e+06)
    return (
        tabulate(classes, headers="keys", intfmt=",", floatfmt=",.2f", tablefmt="simple")
        + "\n\n"
        + tabulate(lifecycle, headers="keys", intfmt=",", tablefmt="simple")
    )


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
