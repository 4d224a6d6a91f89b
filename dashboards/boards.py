"""The Grafana dashboards, generated: one function per panel, one list of panels per board.

A board lists only panels whose tables exist today. A table that another part of the hub adds
later (occupancy, conversion, VIP acknowledgements, vouchers, customer aggregates) gets its
panel as one more function in a board's list; `mallstream dashboards check` runs every panel's
SQL, so a panel whose table is missing fails the check.

Footfall panels take their SQL from :func:`mallstream.reports.footfall_sql`, the same source as
`mallstream report footfall`, so a panel and the report agree for the same range.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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

from mallstream.reports import footfall_sql
from mallstream.settings import Mall, Settings

from .clickhouse import ALL, DATASOURCE, Query

FOLDER_UID, FOLDER_TITLE = "mallstream", "mallstream"
LIVE_REFRESH = "10s"
#: Text size of the big numbers, so a floor manager reads them across a room.
BIG_VALUE_SIZE = 72
MALL = "mall_id = '${mall}'"


@dataclass(frozen=True)
class Site:
    """What the generated SQL needs to know about the hub: its database, the mall's clock and car parks."""

    database: str
    timezone: str
    car_park_capacity: dict[str, int]

    @classmethod
    def of(cls, settings: Settings) -> Site:
        mall: Mall = settings.malls[0]
        return cls(settings.clickhouse.database, mall.timezone, {park.id: park.capacity for park in mall.car_parks})

    def sql(self, text: str) -> str:
        return text.replace("{db}", self.database)


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
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=color) for value, color in steps])


def big_number(title: str, sql: str, unit: str = "short", steps: Sequence[tuple[float | None, str]] = ((None, "blue"),),
               width: int = 8) -> stat.Panel:
    """A stat readable across a room: one big number on a coloured background."""
    return (stat.Panel().title(title).datasource(DATASOURCE).with_target(Query(sql)).unit(unit)
            .thresholds(_thresholds(*steps)).color_mode(viz.BigValueColorMode.BACKGROUND)
            .graph_mode(viz.BigValueGraphMode.NONE).text_mode(viz.BigValueTextMode.VALUE_AND_NAME)
            .text(common.VizTextDisplayOptions().value_size(BIG_VALUE_SIZE))
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
            .height(5).span(width))


def time_series(title: str, *queries: Query, unit: str = "short", width: int = 12, bars: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).datasource(DATASOURCE).targets(list(queries)).unit(unit)
             .line_width(2).fill_opacity(15)
             .legend(common.VizLegendOptions().show_legend(True).display_mode(viz.LegendDisplayMode.LIST)
                     .placement(viz.LegendPlacement.BOTTOM))
             .height(9).span(width))
    return panel.draw_style(viz.GraphDrawStyle.BARS).fill_opacity(80) if bars else panel


def bars(title: str, sql: str, unit: str = "short", width: int = 12) -> bargauge.Panel:
    """One horizontal bar per row: a name column and a value column."""
    return (bargauge.Panel().title(title).datasource(DATASOURCE).with_target(Query(sql)).unit(unit)
            .orientation(viz.VizOrientation.HORIZONTAL).display_mode(viz.BarGaugeDisplayMode.BASIC)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
            .thresholds(_thresholds((None, "green"))).height(9).span(width))


def rows_table(title: str, sql: str, width: int = 24) -> table.Panel:
    return table.Panel().title(title).datasource(DATASOURCE).with_target(Query(sql)).height(9).span(width)


def _place_filter(variable: str, column: str = "p.place_id") -> str:
    return f"AND $__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


def footfall(site: Site, by: str, minutes: int, back: str = "") -> str:
    """The report's footfall SQL for the dashboard's range (``back``: shifted that far into the past)."""
    shift = f" - INTERVAL {back}" if back else ""
    places = _place_filter("floor", "p.floor") + " " + (_place_filter(by) if by in ("entrance", "store") else "")
    return site.sql(footfall_sql("'${mall}'", site.timezone, f"$__fromTime{shift}", f"$__toTime{shift}",
                                 minutes, by, places))


# --- Live footfall -------------------------------------------------------------------------------


def entrance_total(column: str, title: str) -> Panel:
    def panel(site: Site) -> stat.Panel:
        return big_number(title, f"SELECT sum({column}) AS \"{title}\" FROM ({footfall(site, 'entrance', 1440)})")
    return panel


def net_inside(site: Site) -> stat.Panel:
    return big_number("Net in since start of range",
                      f"SELECT sum(net) AS \"In − out\" FROM ({footfall(site, 'entrance', 1440)})",
                      steps=((None, "green"), (2000, "orange"), (4000, "red")))


def per_entrance(column: str) -> Panel:
    def panel(site: Site) -> timeseries.Panel:
        return time_series(f"People {column} per entrance, 15 min", Query(
            f"SELECT interval_start AS time, place, {column} FROM ({footfall(site, 'entrance', 15)})", time_series=True),
            width=12).display_name("${__field.labels.place}")
    return panel


def today_against_last_week(site: Site) -> timeseries.Panel:
    def hourly(back: str, name: str, ref_id: str) -> Query:
        shift = f" + INTERVAL {back}" if back else ""
        return Query(f"SELECT interval_start{shift} AS time, sum(in) AS \"{name}\" "
                     f"FROM ({footfall(site, 'entrance', 60, back)}) GROUP BY time ORDER BY time",
                     time_series=True, ref_id=ref_id)
    return time_series("People in per hour: today against the same weekday last week",
                       hourly("", "today", "A"), hourly("7 DAY", "same weekday last week", "B"), width=24)


def store_visitors(site: Site) -> bargauge.Panel:
    return bars("Store visitors", f"SELECT place AS store, sum(in) AS visitors FROM ({footfall(site, 'store', 1440)}) "
                                  "GROUP BY store ORDER BY visitors DESC", width=24)


FOOTFALL = Board(
    "mallstream-footfall", "Live footfall", "People in and out per entrance, floor and store.", live=True,
    default_range=("now/d", "now"), variables=("mall", "floor", "entrance", "store"),
    panels=(entrance_total("in", "In"), entrance_total("out", "Out"), net_inside, per_entrance("in"),
            per_entrance("out"), today_against_last_week, store_visitors),
)


# --- VIP ---------------------------------------------------------------------------------------------

ALERTS = "{db}.alerts WHERE " + MALL
LATENCY_MS = "dateDiff('millisecond', ts, published_at)"


def vip_arrivals(site: Site) -> stat.Panel:
    return big_number("VIP arrivals", site.sql(
        f"SELECT count() AS arrivals FROM {ALERTS} AND kind = 'vip_arrival' AND $__timeFilter(ts)"))


def vips_inside(site: Site) -> stat.Panel:
    return big_number("VIPs in the mall now", site.sql(f"""
        SELECT countIf(last_kind != 'vip_leaving') AS inside FROM (
            SELECT member_id, argMax(kind, ts) AS last_kind FROM {ALERTS} AND kind LIKE 'vip_%'
              AND ts <= $__toTime AND ts > $__toTime - INTERVAL 12 HOUR GROUP BY member_id)"""),
        steps=((None, "purple"),))


def alert_latency_p95(site: Site) -> stat.Panel:
    return big_number("Alert latency p95 (event to screen)", site.sql(
        f"SELECT quantile(0.95)({LATENCY_MS}) AS p95 FROM {ALERTS} AND published_at IS NOT NULL AND $__timeFilter(ts)"),
        unit="ms", steps=((None, "green"), (2000, "orange"), (5000, "red")))


def arrivals_by_tier(site: Site) -> timeseries.Panel:
    return time_series("VIP arrivals by tier", Query(site.sql(f"""
        SELECT $__timeInterval(ts) AS time, tier, count() AS arrivals FROM {ALERTS} AND kind = 'vip_arrival'
          AND $__timeFilter(ts) GROUP BY time, tier ORDER BY time"""), time_series=True),
        bars=True).display_name("${__field.labels.tier}")


def alert_latency(site: Site) -> timeseries.Panel:
    return time_series("Alert latency", Query(site.sql(f"""
        SELECT $__timeInterval(ts) AS time, quantile(0.5)({LATENCY_MS}) AS p50, quantile(0.95)({LATENCY_MS}) AS p95,
               quantile(0.5)(dateDiff('millisecond', decided_at, published_at)) AS "decision to screen p50"
        FROM {ALERTS} AND published_at IS NOT NULL AND $__timeFilter(ts) GROUP BY time ORDER BY time"""),
        time_series=True), unit="ms")


def vip_paths(site: Site) -> table.Panel:
    return rows_table("VIP visits and paths", site.sql(f"""
        SELECT arrived, member_id AS member, tier, arrayStringConcat(path_places, ' → ') AS path,
               round(dateDiff('second', arrived, left) / 60) AS minutes, spend_cents / 100 AS spend
        FROM {{db}}.vip_visits FINAL WHERE {MALL} AND $__timeFilter(arrived) ORDER BY arrived DESC LIMIT 200"""))


VIP = Board(
    "mallstream-vip", "VIP", "VIP arrivals, who is in the mall, their paths, and how fast alerts reach the screens.",
    live=True, default_range=("now/d", "now"), variables=("mall",),
    panels=(vip_arrivals, vips_inside, alert_latency_p95, arrivals_by_tier, alert_latency, vip_paths),
)


# --- Loyalty -------------------------------------------------------------------------------------------

POINTS = "{db}.points_daily WHERE " + MALL + " AND account = 'points' AND $__dateFilter(business_day) " + \
    _place_filter("store", "store_id")


def points_total(column: str, title: str) -> Panel:
    def panel(site: Site) -> stat.Panel:
        return big_number(title, site.sql(f"SELECT sum({column}) AS points FROM {POINTS}"), width=12)
    return panel


def points_per_day(site: Site) -> timeseries.Panel:
    return time_series("Points per day", Query(site.sql(f"""
        SELECT toDateTime(business_day) AS time, sum(earned) AS issued, sum(reversed) AS "redeemed or reversed"
        FROM {POINTS} GROUP BY time ORDER BY time"""), time_series=True), bars=True)


def points_by_store(site: Site) -> bargauge.Panel:
    return bars("Points issued by store", site.sql(
        f"SELECT store_id AS store, sum(earned) AS points FROM {POINTS} GROUP BY store ORDER BY points DESC"))


def ledger_by_cause(site: Site) -> table.Panel:
    return rows_table("Ledger entries by cause", site.sql(f"""
        SELECT account, cause, count() AS entries, uniqExact(member_id) AS members, sum(delta) AS points
        FROM {{db}}.ledger_entries WHERE {MALL} AND $__timeFilter(ts) {_place_filter('store', 'store_id')}
        GROUP BY account, cause ORDER BY entries DESC"""))


LOYALTY = Board(
    "mallstream-loyalty", "Loyalty", "Points issued and redeemed, by day, store and cause.", live=False,
    default_range=("now-7d/d", "now"), variables=("mall", "store"),
    panels=(points_total("earned", "Points issued"), points_total("reversed", "Points redeemed or reversed"),
            points_per_day, points_by_store, ledger_by_cause),
)


# --- Parking ---------------------------------------------------------------------------------------------

PARKING = "{db}.parking_events WHERE " + MALL
STEP = "if(direction = 'entry', 1, -1)"


def _capacity(site: Site) -> str:
    parks = list(site.car_park_capacity)
    return f"transform(car_park_id, {parks!r}, {[site.car_park_capacity[p] for p in parks]!r}, 0)"


def park_fill(site: Site) -> stat.Panel:
    return big_number("Car park full", site.sql(f"""
        SELECT car_park_id, 100 * sum({STEP}) / any({_capacity(site)}) AS full
        FROM {PARKING} AND ts <= $__toTime GROUP BY car_park_id ORDER BY car_park_id"""),
        unit="percent", steps=((None, "green"), (85, "orange"), (95, "red")))


def cars_parked(site: Site) -> timeseries.Panel:
    return time_series("Cars parked", Query(site.sql(f"""
        SELECT time, car_park_id, cars FROM (
            SELECT time, car_park_id, sum(step) OVER (PARTITION BY car_park_id ORDER BY time) AS cars FROM (
                SELECT $__timeInterval(ts) AS time, car_park_id, sum({STEP}) AS step FROM {PARKING}
                  AND ts <= $__toTime GROUP BY time, car_park_id))
        WHERE time >= $__fromTime ORDER BY time"""), time_series=True),
        ).display_name("${__field.labels.car_park_id}")


def entries_and_exits(site: Site) -> timeseries.Panel:
    return time_series("Cars in and out", Query(site.sql(f"""
        SELECT $__timeInterval(ts) AS time, countIf(direction = 'entry') AS "in", countIf(direction = 'exit') AS "out"
        FROM {PARKING} AND $__timeFilter(ts) GROUP BY time ORDER BY time"""), time_series=True), bars=True)


STAYS = """
    SELECT dateDiff('second', entered.ts, exited.ts) / 60 AS minutes FROM
        (SELECT car_park_id, plate, ts FROM {PARKING} AND direction = 'exit' AND $__timeFilter(ts)) AS exited
    ASOF JOIN (SELECT car_park_id, plate, ts FROM {PARKING} AND direction = 'entry') AS entered
        ON exited.car_park_id = entered.car_park_id AND exited.plate = entered.plate AND exited.ts >= entered.ts"""


def median_stay(site: Site) -> stat.Panel:
    return big_number("Median stay", site.sql(f"SELECT median(minutes) AS stay FROM ({STAYS.format(PARKING=PARKING)})"),
                      unit="m")


def stay_durations(site: Site) -> barchart.Panel:
    return (barchart.Panel().title("Stay durations").datasource(DATASOURCE).with_target(Query(site.sql(f"""
        SELECT multiIf(minutes < 30, '< 30 min', minutes < 60, '30-60 min', minutes < 120, '1-2 h',
                       minutes < 240, '2-4 h', '4 h +') AS stay, count() AS cars, min(minutes) AS shortest
        FROM ({STAYS.format(PARKING=PARKING)}) GROUP BY stay ORDER BY shortest""")))
            .x_field("stay").unit("short").height(9).span(8))


PARKING_BOARD = Board(
    "mallstream-parking", "Parking", "How full the car parks are, cars in and out, and how long they stay.",
    live=True, default_range=("now/d", "now"), variables=("mall",),
    panels=(park_fill, median_stay, stay_durations, cars_parked, entries_and_exits),
)

#: The customers board waits for the customer-intelligence tables (value pyramid, lifecycle, churn).
BOARDS: tuple[Board, ...] = (FOOTFALL, VIP, LOYALTY, PARKING_BOARD)


# --- template variables and the board itself ---------------------------------------------------------------

PLACES = "SELECT DISTINCT {column} FROM {db}.places FINAL WHERE {where} ORDER BY {column}"
VARIABLES = {
    "mall": ("Mall", PLACES.format(column="mall_id", db="{db}", where="1")),
    "floor": ("Floor", PLACES.format(column="floor", db="{db}", where=MALL + " AND floor != ''")),
    "entrance": ("Entrance", PLACES.format(column="place_id", db="{db}", where=MALL + " AND place_kind = 'entrance'")),
    # stores with a device, and stores that issued points
    "store": ("Store", PLACES.format(column="place_id", db="{db}", where=MALL + " AND place_kind = 'store'")
              + " UNION DISTINCT SELECT DISTINCT store_id FROM {db}.points_daily WHERE " + MALL + " AND store_id != ''"),
}


def variable(site: Site, name: str) -> dashboard.QueryVariable:
    label, sql = VARIABLES[name]
    variable = (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE).query(site.sql(sql))
                .refresh(VariableRefresh.ON_DASHBOARD_LOAD))
    return variable if name == "mall" else variable.multi(True).include_all(True).current(
        VariableOption(text="All", value=ALL))


INTERVAL_ONLY = ("auto", "auto_min", "auto_count")


def build(board: Board, site: Site) -> dict:
    """The board as Grafana dashboard JSON (a plain dict)."""
    builder = (dashboard.Dashboard(board.title).uid(board.uid).description(board.description)
               .tags(["mallstream"]).timezone(site.timezone).time(*board.default_range)
               .tooltip(DashboardCursorSync.CROSSHAIR).editable())
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
