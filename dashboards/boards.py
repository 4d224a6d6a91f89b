"""The Grafana dashboards, generated: one function per panel, one list of panels per board.

A panel is one more function in a board's list; `mallstream dashboards check` runs every
panel's SQL, so a panel whose table or column is missing fails the check.

Footfall panels take their SQL from :func:`mallstream.reports.footfall_sql`, the same source as
`mallstream report footfall`, so a panel and the report agree for the same range; so do capture rate and
floor attraction (`report capture|attraction`), the customers' splits (`report customers --by`) and the
campaigns (`report campaigns`). Comparisons with last year shift the range back ``INTERVAL 1 YEAR`` and
the rows forward again, onto this year's time axis.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from grafana_foundation_sdk.builders import barchart, bargauge, common, dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as viz
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
)

from mallstream.customer_reports import BRAND_SQL, CLASSES, COMPOSITION_SQL, SPLITS, STAGES, campaign_sql
from mallstream.reports import attraction_sql, capture_sql, footfall_sql
from mallstream.settings import Mall, Settings

from .clickhouse import ALL, DATASOURCE, Query

FOLDER_UID, FOLDER_TITLE = "mallstream", "mallstream"
LIVE_REFRESH = "10s"
#: Text size of the big numbers, so a floor manager reads them across a room.
BIG_VALUE_SIZE = 72
MALL = "mall_id = '${mall}'"


@dataclass(frozen=True)
class Site:
    """What the generated SQL needs to know about the hub: its database, the mall's clock, its price bands."""

    database: str
    timezone: str
    price_band_edges: tuple[Decimal, ...]

    @classmethod
    def of(cls, settings: Settings) -> Site:
        mall: Mall = settings.malls[0]
        return cls(settings.clickhouse.database, mall.timezone, settings.customers.price_band_edges)

    def sql(self, text: str) -> str:
        return text.replace("{db}", self.database)

    def interval(self, column: str) -> str:
        """Grafana's interval of ``column`` in the mall's time, as the footfall report writes its times."""
        return f"toTimeZone($__timeInterval({column}), '{self.timezone}')"


Panel = Callable[[Site], object]


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    live: bool
    default_range: tuple[str, str]
    variables: Sequence[str]
    panels: Sequence[Panel]


# --- pieces every panel uses -------------------------------------------------------------------


def _thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def big_number(
    title: str,
    sql: str,
    unit: str = "short",
    steps: Sequence[tuple[float | None, str]] = ((None, "blue"),),
    width: int = 8,
) -> stat.Panel:
    """A stat readable across a room: one big number on a coloured background."""
    return (
        stat.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Query(sql))
        .unit(unit)
        .thresholds(_thresholds(*steps))
        .color_mode(viz.BigValueColorMode.BACKGROUND)
        .graph_mode(viz.BigValueGraphMode.NONE)
        .text_mode(viz.BigValueTextMode.VALUE_AND_NAME)
        .text(common.VizTextDisplayOptions().value_size(BIG_VALUE_SIZE))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
        .height(5)
        .span(width)
    )


def time_series(
    title: str, *queries: Query, unit: str = "short", width: int = 12, bars: bool = False
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .targets(list(queries))
        .unit(unit)
        .line_width(2)
        .fill_opacity(15)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(viz.LegendDisplayMode.LIST)
            .placement(viz.LegendPlacement.BOTTOM)
        )
        .height(9)
        .span(width)
    )
    return panel.draw_style(viz.GraphDrawStyle.BARS).fill_opacity(80) if bars else panel


def bars(title: str, sql: str, unit: str = "short", width: int = 12) -> bargauge.Panel:
    """One horizontal bar per row: a name column and a value column."""
    return (
        bargauge.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Query(sql))
        .unit(unit)
        .orientation(viz.VizOrientation.HORIZONTAL)
        .display_mode(viz.BarGaugeDisplayMode.BASIC)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
        .thresholds(_thresholds((None, "green")))
        .height(9)
        .span(width)
    )


def rows_table(title: str, sql: str, width: int = 24) -> table.Panel:
    return table.Panel().title(title).datasource(DATASOURCE).with_target(Query(sql)).height(9).span(width)


def _place_filter(variable: str, column: str = "p.place_id") -> str:
    return f"AND $__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


def footfall(site: Site, by: str, minutes: int, back: str = "") -> str:
    """The report's footfall SQL for the dashboard's range (``back``: shifted that far into the past)."""
    shift = f" - INTERVAL {back}" if back else ""
    places = _place_filter("floor", "p.floor") + " " + (_place_filter(by) if by in ("entrance", "store") else "")
    return site.sql(
        footfall_sql("'${mall}'", site.timezone, f"$__fromTime{shift}", f"$__toTime{shift}", minutes, by, places)
    )


# --- Live footfall -------------------------------------------------------------------------------


def entrance_total(column: str, title: str) -> Panel:
    def panel(site: Site) -> stat.Panel:
        return big_number(
            title, f'SELECT sum({column}) AS "{title}" FROM ({footfall(site, "entrance", 1440)})', width=12
        )

    return panel


def per_entrance(column: str) -> Panel:
    def panel(site: Site) -> timeseries.Panel:
        return time_series(
            f"People {column} per entrance, 15 min",
            Query(
                f"SELECT interval_start AS time, place, {column} FROM ({footfall(site, 'entrance', 15)})",
                time_series=True,
            ),
            width=12,
        ).display_name("${__field.labels.place}")

    return panel


def people_in_against(back: str, then: str) -> Panel:
    """People in per hour over the range, beside the same hours ``back`` (an SQL interval) before."""

    def panel(site: Site) -> timeseries.Panel:
        def hourly(shift: str, name: str, ref_id: str) -> Query:
            forward = f" + INTERVAL {shift}" if shift else ""
            return Query(
                f'SELECT interval_start{forward} AS time, sum(in) AS "{name}" '
                f"FROM ({footfall(site, 'entrance', 60, shift)}) GROUP BY time ORDER BY time",
                time_series=True,
                ref_id=ref_id,
            )

        now = "today" if back == "7 DAY" else "this period"
        return time_series(
            f"People in per hour: {now} against {then}", hourly("", now, "A"), hourly(back, then, "B"), width=24
        )

    return panel


def store_visitors(site: Site) -> bargauge.Panel:
    return bars(
        "Store visitors",
        f"SELECT place AS store, sum(in) AS visitors FROM ({footfall(site, 'store', 1440)}) "
        "GROUP BY store ORDER BY visitors DESC",
        width=24,
    )


# Visitors are the footfall agent's: staff deducted, per entrance, floor, store and the whole mall.


def visitors(level: str, variable: str = "", table: str = "visitors_minute", moment: str = "minute") -> str:
    """Visitor rows of one level in the range, filtered by the board's variable of that level."""
    only = _place_filter(variable, "key") if variable else ""
    return f"{{db}}.{table} WHERE {MALL} AND level = '{level}' AND $__timeFilter({moment}) {only}"


def capture_by_store(site: Site) -> bargauge.Panel:
    return bars(
        "Capture rate: store entries ÷ passers-by in the aisle",
        site.sql(f"""
        SELECT store, sum(entries) / sum(passers_by) AS "capture rate" FROM ({
            capture_sql("'${mall}'", site.timezone, "$__fromTime", "$__toTime", 1440, _place_filter("store", "key"))
        })
        GROUP BY store ORDER BY "capture rate" DESC"""),
        unit="percentunit",
    )


def floor_attraction(site: Site) -> bargauge.Panel:
    return bars(
        "Floor attraction: floor entries ÷ mall entries",
        site.sql(f"""
        SELECT floor, sum(entries) / sum(mall_entries) AS attraction FROM ({
            attraction_sql("'${mall}'", site.timezone, "$__fromTime", "$__toTime", 1440, _place_filter("floor", "key"))
        })
        GROUP BY floor ORDER BY floor"""),
        unit="percentunit",
    )


def visitors_total(site: Site) -> stat.Panel:
    return big_number(
        "Visitors (staff deducted)",
        site.sql(f"SELECT sum(visitors_in) AS visitors FROM {visitors('mall')}"),
        steps=((None, "green"),),
    )


def occupancy_now(site: Site) -> stat.Panel:
    return big_number(
        "Inside now",
        site.sql(f"""
        SELECT argMax(occupancy, start) AS inside FROM {{db}}.area_occupancy
        WHERE {MALL} AND level = 'mall' AND start <= $__toTime AND start > $__toTime - INTERVAL 1 HOUR"""),
        steps=((None, "green"), (1500, "orange"), (3000, "red")),
    )


def mean_dwell(site: Site) -> stat.Panel:
    return big_number(
        "Mean dwell",
        site.sql(f"""
        SELECT sum(departures * dwell_s) / sum(departures) AS dwell FROM {{db}}.area_occupancy
        WHERE {MALL} AND level = 'mall' AND dwell_s IS NOT NULL AND $__timeFilter(start)"""),
        unit="s",
        steps=((None, "blue"),),
    )


def visitors_per(level: str, variable: str) -> Panel:
    def panel(site: Site) -> timeseries.Panel:
        return time_series(
            f"Visitors in per {level}",
            Query(
                site.sql(f"""
            SELECT {site.interval("minute")} AS time, key AS {level}, sum(visitors_in) AS visitors
            FROM {visitors(level, variable)} GROUP BY time, {level} ORDER BY time"""),
                time_series=True,
            ),
            bars=True,
        ).display_name(f"${{__field.labels.{level}}}")

    return panel


def occupancy_over_the_day(site: Site) -> timeseries.Panel:
    return time_series(
        "People inside (corrected for missed exits)",
        Query(
            site.sql(f"""
        SELECT {site.interval("start")} AS time, argMax(occupancy, start) AS inside,
               argMax(occupancy_uncorrected, start) AS "as counted"
        FROM {{db}}.area_occupancy WHERE {MALL} AND level = 'mall' AND $__timeFilter(start)
        GROUP BY time ORDER BY time"""),
            time_series=True,
        ),
        width=24,
    )


def conversion_by_store(site: Site) -> bargauge.Panel:
    return bars(
        "Conversion: transactions ÷ visitors",
        site.sql(f"""
        SELECT key AS store, sum(transactions) / sum(visitors_in) AS conversion FROM {visitors("store", "store")}
        GROUP BY store HAVING sum(visitors_in) > 0 ORDER BY conversion DESC"""),
        unit="percentunit",
    )


def visitors_against_last_week(site: Site) -> timeseries.Panel:
    def hourly(back: str, name: str, ref_id: str) -> Query:
        shift, unshift = (f" - INTERVAL {back}", f" + INTERVAL {back}") if back else ("", "")
        return Query(
            site.sql(f"""
            SELECT toTimeZone(hour{unshift}, '{site.timezone}') AS time, sum(visitors_in) AS "{name}" FROM {{db}}.visitors_hourly
            WHERE {MALL} AND level = 'mall' AND hour >= $__fromTime{shift} AND hour < $__toTime{shift}
            GROUP BY time ORDER BY time"""),
            time_series=True,
            ref_id=ref_id,
        )

    return time_series(
        "Visitors per hour: today against the same weekday last week",
        hourly("", "today", "A"),
        hourly("7 DAY", "same weekday last week", "B"),
    )


FOOTFALL = Board(
    "mallstream-footfall",
    "Live footfall",
    "Visitors (staff deducted) and people counted per entrance, floor and store; who is inside; conversion, "
    "capture rate and floor attraction; against last week and last year.",
    live=True,
    default_range=("now/d", "now"),
    variables=("mall", "floor", "entrance", "store"),
    panels=(
        visitors_total,
        occupancy_now,
        mean_dwell,
        visitors_per("entrance", "entrance"),
        visitors_per("floor", "floor"),
        occupancy_over_the_day,
        visitors_against_last_week,
        conversion_by_store,
        capture_by_store,
        floor_attraction,
        entrance_total("in", "In"),
        entrance_total("out", "Out"),
        per_entrance("in"),
        per_entrance("out"),
        people_in_against("7 DAY", "the same weekday last week"),
        people_in_against("1 YEAR", "the same period last year"),
        store_visitors,
    ),
)


# --- VIP ---------------------------------------------------------------------------------------------

ALERTS = "{db}.alerts WHERE " + MALL
LATENCY_MS = "dateDiff('millisecond', ts, published_at)"


def vip_arrivals(site: Site) -> stat.Panel:
    return big_number(
        "VIP arrivals",
        site.sql(f"SELECT count() AS arrivals FROM {ALERTS} AND kind = 'vip_arrival' AND $__timeFilter(ts)"),
    )


def vips_inside(site: Site) -> stat.Panel:
    return big_number(
        "VIPs in the mall now",
        site.sql(f"""
        SELECT countIf(last_kind != 'vip_leaving') AS inside FROM (
            SELECT member_id, argMax(kind, ts) AS last_kind FROM {ALERTS} AND kind LIKE 'vip_%'
              AND ts <= $__toTime AND ts > $__toTime - INTERVAL 12 HOUR GROUP BY member_id)"""),
        steps=((None, "purple"),),
    )


def alert_latency_p95(site: Site) -> stat.Panel:
    return big_number(
        "Alert latency p95 (event to screen)",
        site.sql(
            f"SELECT quantile(0.95)({LATENCY_MS}) AS p95 FROM {ALERTS} AND published_at IS NOT NULL AND $__timeFilter(ts)"
        ),
        unit="ms",
        steps=((None, "green"), (2000, "orange"), (5000, "red")),
        width=12,
    )


def arrivals_by_tier(site: Site) -> timeseries.Panel:
    return time_series(
        "VIP arrivals by tier",
        Query(
            site.sql(f"""
        SELECT {site.interval("ts")} AS time, tier, count() AS arrivals FROM {ALERTS} AND kind = 'vip_arrival'
          AND $__timeFilter(ts) GROUP BY time, tier ORDER BY time"""),
            time_series=True,
        ),
        bars=True,
    ).display_name("${__field.labels.tier}")


def alert_latency(site: Site) -> timeseries.Panel:
    return time_series(
        "Alert latency",
        Query(
            site.sql(f"""
        SELECT {site.interval("ts")} AS time, quantile(0.5)({LATENCY_MS}) AS p50, quantile(0.95)({LATENCY_MS}) AS p95,
               quantile(0.5)(dateDiff('millisecond', decided_at, published_at)) AS "decision to screen p50"
        FROM {ALERTS} AND published_at IS NOT NULL AND $__timeFilter(ts) GROUP BY time ORDER BY time"""),
            time_series=True,
        ),
        unit="ms",
    )


def vip_paths(site: Site) -> table.Panel:
    return rows_table(
        "VIP visits and paths",
        site.sql(f"""
        SELECT arrived, member_id AS member, tier, arrayStringConcat(path_places, ' → ') AS path,
               round(dateDiff('second', arrived, left) / 60) AS minutes, spend_cents / 100 AS spend
        FROM {{db}}.vip_visits FINAL WHERE {MALL} AND $__timeFilter(arrived) ORDER BY arrived DESC LIMIT 200"""),
    )


#: Acknowledgements of the alerts raised in the range (a replayed day is acknowledged later than it happened).
RECEPTION = "{db}.reception_records WHERE " + MALL + " AND $__timeFilter(alert_ts)"
SECONDS_TO_ACK = "dateDiff('millisecond', alert_ts, acked_at) / 1000"


def acknowledged(site: Site) -> stat.Panel:
    return big_number(
        "Alerts acknowledged",
        site.sql(f"SELECT uniqExact(alert_id) AS acknowledged FROM {RECEPTION}"),
        steps=((None, "green"),),
    )


def mean_seconds_to_ack(site: Site) -> stat.Panel:
    return big_number(
        "Mean time to acknowledge",
        site.sql(f"SELECT avg({SECONDS_TO_ACK}) AS mean FROM {RECEPTION}"),
        unit="s",
        steps=((None, "green"), (120, "orange"), (300, "red")),
        width=12,
    )


def reception_per_day(site: Site) -> table.Panel:
    return rows_table(
        "Acknowledgements and reception notes per day",
        site.sql(f"""
        SELECT toDate(toTimeZone(alert_ts, '{site.timezone}')) AS day, alert_kind AS alert, note_kind AS note,
               count() AS records, uniqExact(member_id) AS members, uniqExact(staff_id) AS staff,
               round(avg({SECONDS_TO_ACK})) AS "mean seconds to ack"
        FROM {RECEPTION} GROUP BY day, alert, note ORDER BY day DESC, records DESC"""),
        width=12,
    )


def reception_notes(site: Site) -> table.Panel:
    return rows_table(
        "Reception notes",
        site.sql(f"""
        SELECT acked_at AS acknowledged, member_id AS member, tier, zone_id AS zone, staff_id AS staff,
               note_kind AS kind, note FROM {RECEPTION} AND note != '' ORDER BY acked_at DESC LIMIT 100"""),
        width=12,
    )


VIP = Board(
    "mallstream-vip",
    "VIP",
    "VIP arrivals, who is in the mall, their paths, how fast alerts reach the screens and staff acknowledge them.",
    live=True,
    default_range=("now/d", "now"),
    variables=("mall",),
    panels=(
        vip_arrivals,
        vips_inside,
        acknowledged,
        alert_latency_p95,
        mean_seconds_to_ack,
        arrivals_by_tier,
        alert_latency,
        reception_per_day,
        reception_notes,
        vip_paths,
    ),
)


# --- Loyalty -------------------------------------------------------------------------------------------

POINTS = (
    "{db}.points_daily WHERE "
    + MALL
    + " AND account = 'points' AND $__dateFilter(business_day) "
    + _place_filter("store", "store_id")
)


def points_total(column: str, title: str) -> Panel:
    def panel(site: Site) -> stat.Panel:
        return big_number(title, site.sql(f"SELECT sum({column}) AS points FROM {POINTS}"), width=12)

    return panel


def points_per_day(site: Site) -> timeseries.Panel:
    return time_series(
        "Points per day",
        Query(
            site.sql(f"""
        SELECT toDateTime(business_day, '{site.timezone}') AS time, sum(earned) AS issued, sum(reversed) AS "redeemed or reversed"
        FROM {POINTS} GROUP BY time ORDER BY time"""),
            time_series=True,
        ),
        bars=True,
    )


def points_by_store(site: Site) -> bargauge.Panel:
    return bars(
        "Points issued by store",
        site.sql(f"SELECT store_id AS store, sum(earned) AS points FROM {POINTS} GROUP BY store ORDER BY points DESC"),
    )


def ledger_by_cause(site: Site) -> table.Panel:
    return rows_table(
        "Ledger entries by cause",
        site.sql(f"""
        SELECT account, cause, count() AS entries, uniqExact(member_id) AS members, sum(delta) AS points
        FROM {{db}}.ledger_entries WHERE {MALL} AND $__timeFilter(ts) {_place_filter("store", "store_id")}
        GROUP BY account, cause ORDER BY entries DESC"""),
    )


#: Daily totals per rule (a voucher campaign is a rule) and cause; money in cents.
RULES = "{db}.rules_daily WHERE " + MALL + " AND $__dateFilter(business_day)"
#: What an effect was worth to the member: discounts carry an amount, payments and rebates move an account.
VALUE_YUAN = "sum(if(cause IN ('tier_discount', 'parking_discount'), toInt64(amount), toInt64(abs(delta)))) / 100"


def vouchers_by_campaign(site: Site) -> table.Panel:
    return rows_table(
        "Vouchers issued and redeemed by campaign",
        site.sql(f"""
        SELECT rule_id AS campaign, sumIf(entries, cause = 'voucher_issued') AS issued,
               sumIf(delta, cause = 'voucher_issued') / 100 AS "issued ¥",
               sumIf(entries, cause = 'voucher_redeemed') AS redeemed,
               -sumIf(delta, cause = 'voucher_redeemed') / 100 AS "redeemed ¥",
               redeemed / issued AS "redeemed share"
        FROM {RULES} AND cause IN ('voucher_issued', 'voucher_redeemed') GROUP BY campaign ORDER BY issued DESC"""),
        width=12,
    )


def rebates_paid(site: Site) -> stat.Panel:
    return big_number(
        "Rebates paid onto cards",
        site.sql(f"SELECT sum(delta) / 100 AS rebates FROM {RULES} AND cause = 'rebate'"),
        unit="currencyCNY",
        width=12,
    )


def stored_value_per_day(site: Site) -> timeseries.Panel:
    return time_series(
        "Stored value paid in and spent per day",
        Query(
            site.sql(f"""
        SELECT toDateTime(business_day, '{site.timezone}') AS time, sumIf(delta, delta > 0) / 100 AS "paid in",
               -sumIf(delta, delta < 0) / 100 AS spent
        FROM {RULES} AND account_kind = 'stored_value' GROUP BY time ORDER BY time"""),
            time_series=True,
        ),
        unit="currencyCNY",
        bars=True,
    )


def given_by_rule(site: Site) -> table.Panel:
    return rows_table(
        "What members were given, by rule: vouchers spent, tier discounts, rebates, free parking",
        site.sql(f"""
        SELECT cause, rule_id AS rule, rule_version AS version, sum(entries) AS times,
               uniqMerge(members) AS members, {VALUE_YUAN} AS "¥"
        FROM {RULES} AND cause IN ('voucher_redeemed', 'tier_discount', 'rebate', 'parking_discount')
        GROUP BY cause, rule, version ORDER BY "¥" DESC"""),
        width=12,
    )


def campaign_participation(site: Site) -> table.Panel:
    return rows_table(
        "Campaigns: who took part, vouchers, redemptions and the spend that earned them",
        site.sql(f"""
        SELECT campaign, members_issued AS "members given", members_redeemed AS "members redeemed",
               vouchers_issued AS vouchers, issued AS "issued ¥", redeemed AS "redeemed ¥", clawed AS "clawed back ¥",
               triggering_spend AS "triggering spend ¥", redeemed_share AS "redeemed share"
        FROM ({campaign_sql("'${mall}'", "$__dateFilter(business_day)")})"""),
    )


def campaign_composition(site: Site) -> table.Panel:
    return rows_table(
        "Campaign participants by value class and lifecycle stage, as they are now (all time)",
        site.sql(f"""
        SELECT campaign, value_class AS class, lifecycle_stage AS stage, members, share
        FROM ({COMPOSITION_SQL})"""),
    )


LOYALTY = Board(
    "mallstream-loyalty",
    "Loyalty",
    "Points issued and redeemed, vouchers by campaign, rebates, stored value and discounts, by day, store and rule; "
    "who took part in each campaign.",
    live=False,
    default_range=("now-7d/d", "now"),
    variables=("mall", "store"),
    panels=(
        points_total("earned", "Points issued"),
        points_total("reversed", "Points redeemed or reversed"),
        points_per_day,
        points_by_store,
        vouchers_by_campaign,
        rebates_paid,
        stored_value_per_day,
        given_by_rule,
        campaign_participation,
        campaign_composition,
        ledger_by_cause,
    ),
)


# --- Parking ---------------------------------------------------------------------------------------------

PARKING = "{db}.parking_events WHERE " + MALL
#: Cars in each car park after every gate event, from the parking agent.
OCCUPANCY = "{db}.parking_occupancy WHERE " + MALL
#: Stays the parking agent closed at an exit in the range.
STAYS = "{db}.parking_stays WHERE " + MALL + " AND $__timeFilter(exit) AND duration_s IS NOT NULL"
GRANTS = "{db}.ledger_entries WHERE " + MALL + " AND cause = 'parking_discount' AND $__timeFilter(ts)"


def park_fill(site: Site) -> stat.Panel:
    return big_number(
        "Car park full",
        site.sql(f"""
        SELECT car_park_id, 100 * argMax(occupancy, ts) / argMax(capacity, ts) AS full
        FROM {OCCUPANCY} AND ts <= $__toTime GROUP BY car_park_id ORDER BY car_park_id"""),
        unit="percent",
        steps=((None, "green"), (85, "orange"), (95, "red")),
        width=6,
    )


def median_stay(site: Site) -> stat.Panel:
    return big_number(
        "Median stay", site.sql(f"SELECT median(duration_s) / 60 AS stay FROM {STAYS}"), unit="m", width=6
    )


def free_parking_grants(site: Site) -> stat.Panel:
    return big_number(
        "Free-parking grants", site.sql(f"SELECT count() AS grants FROM {GRANTS}"), steps=((None, "purple"),), width=6
    )


def fees_waived(site: Site) -> stat.Panel:
    return big_number(
        "Fees waived",
        site.sql(f"SELECT sum(amount) / 100 AS waived FROM {GRANTS}"),
        unit="currencyCNY",
        steps=((None, "purple"),),
        width=6,
    )


def cars_parked(site: Site) -> timeseries.Panel:
    return time_series(
        "Cars parked",
        Query(
            site.sql(f"""
        SELECT {site.interval("ts")} AS time, car_park_id, argMax(occupancy, ts) AS cars
        FROM {OCCUPANCY} AND $__timeFilter(ts) GROUP BY time, car_park_id ORDER BY time"""),
            time_series=True,
        ),
    ).display_name("${__field.labels.car_park_id}")


def entries_and_exits(site: Site) -> timeseries.Panel:
    return time_series(
        "Cars in and out",
        Query(
            site.sql(f"""
        SELECT {site.interval("ts")} AS time, countIf(direction = 'entry') AS "in", countIf(direction = 'exit') AS "out"
        FROM {PARKING} AND $__timeFilter(ts) GROUP BY time ORDER BY time"""),
            time_series=True,
        ),
        bars=True,
    )


def stay_durations(site: Site) -> barchart.Panel:
    return (
        barchart.Panel()
        .title("Stay durations")
        .datasource(DATASOURCE)
        .with_target(
            Query(
                site.sql(f"""
        SELECT multiIf(minutes < 30, '< 30 min', minutes < 60, '30-60 min', minutes < 120, '1-2 h',
                       minutes < 240, '2-4 h', '4 h +') AS stay, count() AS cars
        FROM (SELECT duration_s / 60 AS minutes FROM {STAYS}) GROUP BY stay ORDER BY min(minutes)""")
            )
        )
        .x_field("stay")
        .unit("short")
        .height(9)
        .span(24)
    )


def cars_in_against_last_year(site: Site) -> timeseries.Panel:
    def hourly(back: str, name: str, ref_id: str) -> Query:
        shift, unshift = (f" - INTERVAL {back}", f" + INTERVAL {back}") if back else ("", "")
        return Query(
            site.sql(f"""
            SELECT toTimeZone(hour{unshift}, '{site.timezone}') AS time, sum(entries) AS "{name}" FROM {{db}}.parking_hourly
            WHERE {MALL} AND hour >= $__fromTime{shift} AND hour < $__toTime{shift}
            GROUP BY time ORDER BY time"""),
            time_series=True,
            ref_id=ref_id,
        )

    return time_series(
        "Cars in per hour: this period against the same period last year",
        hourly("", "this period", "A"),
        hourly("1 YEAR", "the same period last year", "B"),
        width=24,
    )


PARKING_BOARD = Board(
    "mallstream-parking",
    "Parking",
    "How full the car parks are, cars in and out (against last year), how long they stay, and the free parking "
    "members were granted.",
    live=True,
    default_range=("now/d", "now"),
    variables=("mall",),
    panels=(
        park_fill,
        median_stay,
        free_parking_grants,
        fees_waived,
        cars_parked,
        entries_and_exits,
        stay_durations,
        cars_in_against_last_year,
    ),
)


# --- Customers -------------------------------------------------------------------------------------------
# The views read every member's latest snapshot: the board shows the customers as they are now.

CLASS_ORDER = "ORDER BY value_class"


def members_total(site: Site) -> stat.Panel:
    return big_number(
        "Members",
        site.sql("SELECT sum(members) AS members FROM {db}.customer_pyramid"),
        steps=((None, "blue"),),
        width=6,
    )


def at_risk(site: Site) -> stat.Panel:
    return big_number(
        "Declining or churned",
        site.sql("SELECT sumIf(members, stage IN ('declining', 'churned')) AS members FROM {db}.customer_lifecycle"),
        steps=((None, "orange"),),
        width=6,
    )


def value_pyramid(site: Site) -> barchart.Panel:
    return (
        barchart.Panel()
        .title("Value pyramid: share of members and of spend per class")
        .datasource(DATASOURCE)
        .with_target(
            Query(
                site.sql(f"""
                SELECT value_class AS class, member_share AS members, spend_share AS spend
                FROM {{db}}.customer_pyramid {CLASS_ORDER}""")
            )
        )
        .x_field("class")
        .unit("percentunit")
        .height(9)
        .span(12)
    )


def pyramid_table(site: Site) -> table.Panel:
    return rows_table(
        "Value classes",
        site.sql(f"""
        SELECT value_class AS class, members, spend_cents / 100 AS "spend ¥", member_share AS "member share",
               spend_share AS "spend share" FROM {{db}}.customer_pyramid {CLASS_ORDER}"""),
        width=12,
    )


def lifecycle(site: Site) -> bargauge.Panel:
    return bars(
        "Members per lifecycle stage",
        site.sql(f"""
        SELECT stage, members FROM {{db}}.customer_lifecycle
        ORDER BY indexOf({list(STAGES)!r}, stage)"""),
    )


def churn_signals(site: Site) -> timeseries.Panel:
    return time_series(
        "Churn signals",
        Query(
            site.sql(f"""
        SELECT {site.interval("ts")} AS time, kind, count() AS members FROM {{db}}.alerts
        WHERE {MALL} AND kind IN ('churn_risk', 'churned', 'recovered') AND $__timeFilter(ts)
        GROUP BY time, kind ORDER BY time"""),
            time_series=True,
        ),
        bars=True,
        width=24,
    ).display_name("${__field.labels.kind}")


def top_by_class(view: str, column: str) -> Panel:
    def panel(site: Site) -> table.Panel:
        return rows_table(
            f"Top {view} per class",
            site.sql(f"""
            SELECT value_class AS class, {column}, members, spend_cents / 100 AS "spend ¥"
            FROM {{db}}.customer_class_{view} ORDER BY class, spend_cents DESC LIMIT 5 BY class"""),
            width=12,
        )

    return panel


def composition(site: Site) -> table.Panel:
    return rows_table(
        "Composition by tier, age, gender and region",
        site.sql("""
        SELECT tier, age_band AS age, gender, region, value_class AS class, sum(members) AS members,
               sum(spend_cents) / 100 AS "spend ¥", sum(spend_cents) / greatest(sum(receipts), 1) / 100 AS "ticket ¥"
        FROM {db}.customer_composition GROUP BY tier, age, gender, region, class ORDER BY members DESC LIMIT 100"""),
    )


def class_split(by: str, title: str) -> Panel:
    """Each value class's share of its own visits or spend per bucket: classes of any size side by side."""

    def panel(site: Site) -> barchart.Panel:
        split = SPLITS[by]
        shares = ", ".join(f"{name}_share AS {name}" for name in CLASSES)
        return (
            barchart.Panel()
            .title(title)
            .datasource(DATASOURCE)
            .with_target(Query(site.sql(f"SELECT {split.by}, {shares} FROM ({split.sql(site.price_band_edges)})")))
            .x_field(split.by)
            .unit("percentunit")
            .height(9)
            .span(24 if by == "hour" else 12)
        )

    return panel


def brand_fans(site: Site) -> table.Panel:
    return rows_table(
        "Brand fans: members with the brand in their top three, and their spend",
        site.sql(f"""
        SELECT brand, fans, spend AS "fans' spend ¥", spend_per_fan AS "spend per fan ¥" FROM ({BRAND_SQL})"""),
    )


CUSTOMERS = Board(
    "mallstream-customers",
    "Customers",
    "Members by value class and lifecycle stage, churn signals over time, what each class buys, when and at what "
    "price, the brands members favour, and who they are.",
    live=False,
    default_range=("now-30d/d", "now"),
    variables=("mall",),
    panels=(
        members_total,
        at_risk,
        value_pyramid,
        pyramid_table,
        lifecycle,
        churn_signals,
        top_by_class("brands", "brand"),
        top_by_class("categories", "category"),
        class_split("weekday", "Visits by weekday: share of each class's visits"),
        class_split("price-band", "Spend by unit-price band: share of each class's spend"),
        class_split("hour", "Visits by hour: share of each class's visits"),
        brand_fans,
        composition,
    ),
)

BOARDS: tuple[Board, ...] = (FOOTFALL, VIP, LOYALTY, PARKING_BOARD, CUSTOMERS)


# --- template variables and the board itself ---------------------------------------------------------------

PLACES = "SELECT DISTINCT {column} FROM {db}.places FINAL WHERE {where} ORDER BY {column}"
VARIABLES = {
    "mall": ("Mall", PLACES.format(column="mall_id", db="{db}", where="1")),
    "floor": ("Floor", PLACES.format(column="floor", db="{db}", where=MALL + " AND floor != ''")),
    "entrance": ("Entrance", PLACES.format(column="place_id", db="{db}", where=MALL + " AND place_kind = 'entrance'")),
    # stores with a device, and stores that issued points
    "store": (
        "Store",
        PLACES.format(column="place_id", db="{db}", where=MALL + " AND place_kind = 'store'")
        + " UNION DISTINCT SELECT DISTINCT store_id FROM {db}.points_daily WHERE "
        + MALL
        + " AND store_id != ''",
    ),
}


def variable(site: Site, name: str) -> dashboard.QueryVariable:
    label, sql = VARIABLES[name]
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(site.sql(sql))
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
    )
    return (
        variable
        if name == "mall"
        else variable.multi(True).include_all(True).current(VariableOption(text="All", value=ALL))
    )


INTERVAL_ONLY = ("auto", "auto_min", "auto_count")


def build(board: Board, site: Site) -> dict:
    """The board as Grafana dashboard JSON (a plain dict)."""
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(["mallstream"])
        .timezone(site.timezone)
        .time(*board.default_range)
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
    )
    if board.live:
        builder = builder.refresh(LIVE_REFRESH)
    for name in board.variables:
        builder = builder.with_variable(variable(site, name))
    for number, panel in enumerate(board.panels, start=1):
        builder = builder.with_panel(panel(site).id(number))
    built = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for query_variable in built["templating"]["list"]:
        for key in INTERVAL_ONLY:  # the SDK writes them on every variable; Grafana's schema has them on none
            query_variable.pop(key, None)
    return built


def build_all(settings: Settings) -> list[dict]:
    site = Site.of(settings)
    return [build(board, site) for board in BOARDS]
