"""Footfall, visitor, conversion and occupancy reports per interval and place, from the ClickHouse roll-ups.

The same SQL serves `mallstream report ...` and the dashboards, so a panel and a
report never disagree. Times are the mall's local time.

Grains: a report reads the coarsest roll-up that answers its interval exactly, among those whose
TTL still holds the range's start (counted from now, as ClickHouse counts it). Minute rows go after
90 days and hours are kept, so a 15-minute report of last year is answered by the hour, and says so
(``grain`` in every row of json and csv, a line above the table).

Two counts of people:

* people (``footfall_sql``): what the counters counted, staff included, from the raw ticks;
* visitors (``visitors_sql``): the footfall agent's roll-ups, staff deducted, at every level
  (counter, entrance, floor, zone, store and the mall).

``--by`` picks the counters and what they are summed by:

* ``entrance``, ``zone``, ``store``: counters placed at such a place, by place;
* ``floor``: counters at floor transitions (escalators, lifts, stairs: their place is a floor), by floor;
  for visitors, also the entrances opening onto the floor;
* ``counter``: every counter on its own; ``mall`` (visitors only): the mall's entrances together.

Two ratios of the visitor roll-ups the product docs ask for: a store's capture rate (剥离率: its entries
÷ the passers-by its aisle counter, ``footfall.aisle_counters``, counted in both directions) and a floor's
attraction (its entries ÷ the mall's). ``--compare last-year`` sets each interval beside the same interval
a calendar year before (29 February against the 28th), read at one grain for both years.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .querying import quote
from .sinks.tables import RETENTION

INTERVALS = {"5m": 5, "10m": 10, "15m": 15, "30m": 30, "60m": 60, "1h": 60, "1d": 1440}
GROUPINGS = ("entrance", "floor", "zone", "store", "counter")
#: Levels of the visitor roll-ups (staff deducted).
VISITOR_LEVELS = (*GROUPINGS, "mall")
#: Areas with an occupancy.
AREA_LEVELS = ("mall", "floor", "zone", "store")
PERIODS = ("day", "week", "month")
FORMATS = ("table", "json", "csv")
COLUMNS = ("interval_start", "place", "in", "out", "total", "net")
PERIOD_COLUMNS = ("period", "place", "days", "in", "out", "per_day", "share", "peak_start", "peak_in")
CONVERSION_COLUMNS = ("interval_start", "level", "place", "visitors", "transactions", "conversion")
CAPTURE_COLUMNS = ("interval_start", "store", "passers_by", "entries", "capture_rate")
ATTRACTION_COLUMNS = ("interval_start", "floor", "entries", "mall_entries", "attraction")
COMPARISONS = ("last-year",)
OCCUPANCY_COLUMNS = (
    "interval_start",
    "level",
    "area",
    "occupancy_mean",
    "occupancy_peak",
    "density_peak",
    "departures",
    "dwell_min",
)
#: What a period's rows are grouped by (on a local date), and what a row's ``share`` is a share of.
_PERIOD_OF = {"day": "toDate({})", "week": "toMonday({})", "month": "toStartOfMonth({})"}
_SHARE_OF = {"day": "toMonday(period)", "week": "0", "month": "0"}
_NUMBERS = "SETTINGS output_format_json_quote_64bit_integers = 0"


@dataclass(frozen=True)
class ReportWindow:
    """Which mall, from when to when (local, end exclusive), in intervals of how many minutes."""

    mall_id: str
    timezone: str
    start: dt.datetime
    end: dt.datetime
    interval_minutes: int = 60

    def bounds(self) -> tuple[str, str, str]:
        """The mall, start and end as SQL expressions."""
        return quote(self.mall_id), _utc(self.start), _utc(self.end)


@dataclass(frozen=True)
class Grain:
    """A table a report can read: the grain it says, its time column, and how long its rows live."""

    name: str
    table: str
    moment: str
    #: the shortest interval it answers exactly (its rows' length)
    minutes: int

    @property
    def kept_days(self) -> int | None:
        """Days its TTL keeps rows for; None: kept for ever."""
        kept = RETENTION.get(self.table)
        return kept.days if kept else None

    def covers(self, start: dt.datetime, now: dt.datetime) -> bool:
        """Whether its TTL still keeps rows from ``start`` on."""
        return self.kept_days is None or start >= now - dt.timedelta(days=self.kept_days)


#: Per report, its grains from fine to coarse; the last is kept for ever.
FOOTFALL_GRAINS = (Grain("minute", "footfall_minute", "minute", 1), Grain("hour", "footfall_hourly", "hour", 60))
VISITOR_GRAINS = (Grain("minute", "visitors_minute", "minute", 1), Grain("hour", "visitors_hourly", "hour", 60))
OCCUPANCY_GRAINS = (Grain("minute", "area_occupancy", "start", 1), Grain("hour", "area_occupancy_hourly", "hour", 60))


@dataclass(frozen=True)
class Reading:
    """The grain a report reads and the window it answers, whose interval may be wider than the one asked."""

    grain: Grain
    window: ReportWindow
    asked_minutes: int
    #: the finer grain whose rows are gone for this range, when the interval had to be widened
    expired: Grain | None = None

    def note(self) -> str:
        """The line a table starts with."""
        said = f"grain: {self.grain.name}"
        if self.expired is None:
            return said
        return (
            f"{said} ({self.asked_minutes}-minute intervals asked; {self.expired.name} rows are kept "
            f"{self.expired.kept_days} days, so this range is answered by the {self.grain.name})"
        )


def reading(grains: Sequence[Grain], window: ReportWindow, now: dt.datetime | None = None) -> Reading:
    """The coarsest grain that answers the interval exactly and still holds the range's start;
    failing that, the finest that holds it, the interval widened to that grain."""
    now = now or dt.datetime.now(dt.UTC)
    covering = [grain for grain in grains if grain.covers(window.start, now)]
    exact = [grain for grain in covering if window.interval_minutes % grain.minutes == 0]
    if exact:
        return Reading(exact[-1], window, window.interval_minutes)
    widened = replace(window, interval_minutes=covering[0].minutes)
    finer = [grain for grain in grains if window.interval_minutes % grain.minutes == 0]
    return Reading(covering[0], widened, window.interval_minutes, finer[-1])


def _exact(grains: Sequence[Grain], interval_minutes: int) -> Grain:
    """The coarsest grain that answers the interval exactly, whatever the range (for dashboards' macros)."""
    return [grain for grain in grains if interval_minutes % grain.minutes == 0][-1]


@dataclass(frozen=True)
class FootfallQuery:
    """People (or visitors) in and out per interval, summed by ``by``."""

    window: ReportWindow
    by: str
    #: staff deducted, from the footfall agent's roll-ups, rather than what counters counted
    visitors: bool = False

    def reading(self, now: dt.datetime | None = None) -> Reading:
        return reading(VISITOR_GRAINS if self.visitors else FOOTFALL_GRAINS, self.window, now)

    def sql(self, read: Reading | None = None) -> str:
        """One row per interval and place: interval start (local), place, in, out, total, net."""
        read = read or self.reading()
        make = visitors_sql if self.visitors else footfall_sql
        mall, start, end = read.window.bounds()
        return make(mall, read.window.timezone, start, end, read.window.interval_minutes, self.by, grain=read.grain)


def footfall_sql(
    mall: str,
    timezone: str,
    start: str,
    end: str,
    interval_minutes: int,
    by: str,
    places: str = "",
    grain: Grain | None = None,
) -> str:
    """The footfall report's SQL with mall, start and end as SQL expressions, so a dashboard can pass macros.

    ``places`` is an extra condition on the places joined (``p``), for a dashboard's place filters.
    ``grain`` is one of FOOTFALL_GRAINS; by default the coarsest that answers the interval exactly.
    """
    grain = grain or _exact(FOOTFALL_GRAINS, interval_minutes)
    table, moment = grain.table, grain.moment
    if by == "counter":
        place, only = "f.counter_id", ""
    elif by == "floor":
        place, only = "p.floor", "AND p.place_kind = 'floor'"
    else:
        place, only = "p.place_id", f"AND p.place_kind = {quote(by)}"
    return f"""
        SELECT {interval_start_sql(f"f.{moment}", timezone, interval_minutes)} AS interval_start,
               {place} AS place,
               sum(f.count_in) AS in, sum(f.count_out) AS out,
               in + out AS total, toInt64(in) - toInt64(out) AS net
        FROM {{db}}.{table} AS f
        INNER JOIN (SELECT * FROM {{db}}.places FINAL WHERE mall_id = {mall}) AS p
            ON p.device_id = f.counter_id
        WHERE f.mall_id = {mall} {only} {places}
          AND f.{moment} >= {start} AND f.{moment} < {end}
        GROUP BY interval_start, place
        ORDER BY interval_start, place
        SETTINGS output_format_json_quote_64bit_integers = 0"""


def interval_start_sql(column: str, timezone: str, interval_minutes: int) -> str:
    """The local start of the interval ``column`` falls in; whole days start at local midnight, not UTC's."""
    local = f"toTimeZone({column}, {quote(timezone)})"
    if interval_minutes % 1440 == 0:
        return f"toStartOfInterval({local}, INTERVAL {interval_minutes // 1440} DAY)"
    return f"toStartOfInterval({local}, INTERVAL {interval_minutes} MINUTE)"


def visitors_sql(
    mall: str, timezone: str, start: str, end: str, interval_minutes: int, level: str, grain: Grain | None = None
) -> str:
    """Visitors (staff deducted) per interval and place at one level, in the footfall report's columns."""
    grain = grain or _exact(VISITOR_GRAINS, interval_minutes)
    moment = grain.moment
    return f"""
        SELECT {interval_start_sql(moment, timezone, interval_minutes)} AS interval_start, key AS place,
               sum(visitors_in) AS in, sum(visitors_out) AS out, in + out AS total, in - out AS net
        FROM {{db}}.{grain.table}
        WHERE mall_id = {mall} AND level = {quote(level)} AND {moment} >= {start} AND {moment} < {end}
        GROUP BY interval_start, place
        ORDER BY interval_start, place
        {_NUMBERS}"""


def period_sql(window: ReportWindow, period: str, level: str, read: Reading | None = None) -> str:
    """Visitors per day, week or month and place: totals, average per day, share, and the busiest interval.

    Totals come from the daily roll-up and peaks from the grain read (``read``, by default the one
    that covers the window), so months and years stay reportable after minute data expires.
    A day's ``share`` is of its week (day-of-week share); a week's or month's, of the whole range.
    """
    read = read or reading(VISITOR_GRAINS, window)
    window, moment = read.window, read.grain.moment
    mall, start, end = window.bounds()
    local = f"toDate(toTimeZone({{}}, {quote(window.timezone)}))"
    where = f"mall_id = {mall} AND level = {quote(level)}"
    return f"""
        SELECT d.period AS period, d.place AS place, d.days AS days, d.in AS in, d.out AS out,
               d.per_day AS per_day, d.share AS share, p.peak_start AS peak_start, p.peak_in AS peak_in
        FROM (
            SELECT {_PERIOD_OF[period].format("day")} AS period, key AS place, uniqExact(day) AS days,
                   sum(visitors_in) AS in, sum(visitors_out) AS out, round(in / days, 1) AS per_day,
                   round(in / sum(sum(visitors_in)) OVER (PARTITION BY place, {_SHARE_OF[period]}), 4) AS share
            FROM {{db}}.visitors_daily
            WHERE {where} AND day >= {local.format(start)} AND day < {local.format(end)}
            GROUP BY period, place) AS d
        LEFT JOIN (
            SELECT {_PERIOD_OF[period].format("toDate(interval_start)")} AS period, place,
                   argMax(interval_start, people) AS peak_start, max(people) AS peak_in
            FROM (SELECT {interval_start_sql(moment, window.timezone, window.interval_minutes)} AS interval_start,
                         key AS place, sum(visitors_in) AS people
                  FROM {{db}}.{read.grain.table} WHERE {where} AND {moment} >= {start} AND {moment} < {end}
                  GROUP BY interval_start, place)
            GROUP BY period, place) AS p
        ON p.period = d.period AND p.place = d.place
        ORDER BY period, place
        {_NUMBERS}"""


def conversion_sql(window: ReportWindow, read: Reading | None = None) -> str:
    """Bag rate per interval: transactions ÷ visitors who came in, for each store and the mall.

    A store without a counter has transactions but no visitors: its conversion is null, not infinite.
    """
    read = read or reading(VISITOR_GRAINS, window)
    window, moment = read.window, read.grain.moment
    mall, start, end = window.bounds()
    return f"""
        SELECT {interval_start_sql(moment, window.timezone, window.interval_minutes)} AS interval_start, level,
               key AS place, sum(visitors_in) AS visitors, sum(transactions) AS transactions,
               if(visitors > 0, round(transactions / visitors, 4), NULL) AS conversion
        FROM {{db}}.{read.grain.table}
        WHERE mall_id = {mall} AND level IN ('store', 'mall') AND {moment} >= {start} AND {moment} < {end}
        GROUP BY interval_start, level, place
        HAVING visitors != 0 OR transactions != 0
        ORDER BY interval_start, level = 'mall', place
        {_NUMBERS}"""


def capture_sql(
    mall: str, timezone: str, start: str, end: str, interval_minutes: int, stores: str = "", grain: Grain | None = None
) -> str:
    """Capture rate per interval and store: store entries ÷ passers-by at the aisle counter before it.

    Only stores with an aisle counter have passers-by; an interval nobody passed has no rate, so no row.
    ``stores`` is an extra condition on ``key`` (a dashboard's store filter).
    """
    grain = grain or _exact(VISITOR_GRAINS, interval_minutes)
    moment = grain.moment
    return f"""
        SELECT {interval_start_sql(moment, timezone, interval_minutes)} AS interval_start, key AS store,
               sum(passers_by) AS passers_by, sum(visitors_in) AS entries, round(entries / passers_by, 4) AS capture_rate
        FROM {{db}}.{grain.table}
        WHERE mall_id = {mall} AND level = 'store' AND {moment} >= {start} AND {moment} < {end} {stores}
        GROUP BY interval_start, store
        HAVING passers_by > 0
        ORDER BY interval_start, store
        {_NUMBERS}"""


def attraction_sql(
    mall: str, timezone: str, start: str, end: str, interval_minutes: int, floors: str = "", grain: Grain | None = None
) -> str:
    """Floor attraction per interval: visitors entering each floor ÷ visitors entering the mall.

    A floor's entries are its transition counters' and the entrances opening onto it: a floor without
    either has no rows. ``floors`` is an extra condition on ``key`` (a dashboard's floor filter).
    """
    grain = grain or _exact(VISITOR_GRAINS, interval_minutes)
    moment = grain.moment
    return f"""
        SELECT interval_start, key AS floor, entries, mall_entries,
               if(mall_entries > 0, round(entries / mall_entries, 4), NULL) AS attraction
        FROM (SELECT {interval_start_sql(moment, timezone, interval_minutes)} AS interval_start, level, key,
                     sum(visitors_in) AS entries,
                     sum(if(level = 'mall', entries, 0)) OVER (PARTITION BY interval_start) AS mall_entries
              FROM {{db}}.{grain.table}
              WHERE mall_id = {mall} AND level IN ('floor', 'mall') AND {moment} >= {start} AND {moment} < {end}
              GROUP BY interval_start, level, key)
        WHERE level = 'floor' {floors}
        ORDER BY interval_start, floor
        {_NUMBERS}"""


def for_reading(make: Callable[..., str], read: Reading) -> str:
    """A report's SQL from a maker taking the window as SQL expressions (as dashboards pass macros)."""
    mall, start, end = read.window.bounds()
    return make(mall, read.window.timezone, start, end, read.window.interval_minutes, grain=read.grain)


def year_back(moment: dt.datetime) -> dt.datetime:
    """The same moment a calendar year before; 29 February goes to the 28th, as ClickHouse's ``- INTERVAL 1 YEAR``."""
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:
        return moment.replace(year=moment.year - 1, day=28)


def compare_readings(
    grains: Sequence[Grain], window: ReportWindow, now: dt.datetime | None = None
) -> tuple[Reading, Reading]:
    """This window's reading and last year's, at one interval: last year's may have to be widened to the hour."""
    before = replace(window, start=year_back(window.start), end=year_back(window.end))
    then = reading(grains, before, now)
    return reading(grains, replace(window, interval_minutes=then.window.interval_minutes), now), then


def compared(
    rows: Sequence[dict], last_year: Sequence[dict], keys: Sequence[str], figures: Sequence[str]
) -> list[dict]:
    """This period's rows, each with the same interval's figures a year before (``<figure>_last_year``: null
    where last year has no row) and ``change``, the relative change of the first figure."""

    def shifted(row: dict) -> tuple:
        start = year_back(dt.datetime.fromisoformat(row[keys[0]]))
        return (start.strftime("%Y-%m-%d %H:%M:%S"), *(row[name] for name in keys[1:]))

    before = {(row[keys[0]][:19], *(row[name] for name in keys[1:])): row for row in last_year}
    out = []
    for row in rows:
        then = before.get(shifted(row))
        earlier = {f"{figure}_last_year": then[figure] if then else None for figure in figures}
        base, now = earlier[f"{figures[0]}_last_year"], row[figures[0]]
        out.append({**row, **earlier, "change": round(now / base - 1, 4) if base and now is not None else None})
    return out


def compared_columns(columns: Sequence[str], figures: Sequence[str]) -> tuple[str, ...]:
    """A report's columns with last year's figures and the change after them."""
    return (*columns, *(f"{figure}_last_year" for figure in figures), "change")


def occupancy_sql(window: ReportWindow, level: str, read: Reading | None = None) -> str:
    """Corrected occupancy per interval and area: mean and peak, peak density (people/m²), departures, mean dwell.

    Density divides by the area's floor space in the ``places`` table (null where the config gives none).
    Dwell is the mean length, in minutes, of the visits that ended in the interval.
    """
    read = read or reading(OCCUPANCY_GRAINS, window)
    window, moment, table = read.window, read.grain.moment, read.grain.table
    mall, start, end = window.bounds()
    if read.grain.name == "hour":
        figures = """round(sum(occupancy_sum) / sum(samples), 1) AS occupancy_mean,
                     max(occupancy_peak) AS occupancy_peak, sum(departures) AS departed,
                     sum(dwell_seconds) AS dwelt"""
    else:
        figures = """round(avg(occupancy), 1) AS occupancy_mean, max(occupancy) AS occupancy_peak,
                     sum(departures) AS departed, sum(departures * ifNull(dwell_s, 0)) AS dwelt"""
    return f"""
        SELECT interval_start, level, area, occupancy_mean, occupancy_peak,
               round(occupancy_peak / s.area_m2, 4) AS density_peak, round(departed) AS departures,
               if(departed > 0, round(dwelt / departed / 60, 1), NULL) AS dwell_min
        FROM (SELECT {interval_start_sql(moment, window.timezone, window.interval_minutes)} AS interval_start,
                     level, key AS area, {figures}
              FROM {{db}}.{table}
              WHERE mall_id = {mall} AND level = {quote(level)} AND {moment} >= {start} AND {moment} < {end}
              GROUP BY interval_start, level, area) AS o
        LEFT JOIN (SELECT place_id, max(area_m2) AS area_m2 FROM {{db}}.places FINAL
                   WHERE mall_id = {mall} GROUP BY place_id) AS s ON s.place_id = o.area
        ORDER BY interval_start, area
        {_NUMBERS}"""


def _utc(moment: dt.datetime) -> str:
    return f"toDateTime({quote(moment.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M:%S'))}, 'UTC')"


def render(rows: Sequence[dict], fmt: str, columns: Sequence[str] = COLUMNS, read: Reading | None = None) -> str:
    """The report as a table for people, or JSON / CSV for programs; with the grain ``read``, if given."""
    records = [{column: row[column] for column in columns} for row in rows]
    if read is not None and fmt != "table":
        columns = (*columns, "grain")
        records = [record | {"grain": read.grain.name} for record in records]
    if fmt == "json":
        return json.dumps(records, ensure_ascii=False, indent=1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()
    from tabulate import tabulate

    text = tabulate(records, headers="keys", intfmt=",", tablefmt="simple", missingval="-")
    return text if read is None else f"{read.note()}\n{text}"


def agg_pyplot():
    """pyplot drawing to files only (no display), imported when a plot is asked for: it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series_by(rows: Sequence[dict], group: str, x: str, y: str) -> dict[str, tuple[list, list]]:
    """Points per ``group`` value, in row order, skipping nulls."""
    series: dict[str, tuple[list, list]] = {}
    for row in rows:
        if row[y] is None:
            continue
        times, values = series.setdefault(row[group], ([], []))
        times.append(dt.datetime.fromisoformat(row[x]))
        values.append(float(row[y]))
    return series


def plot_lines(
    rows: Sequence[dict],
    title: str,
    path: Path,
    y: str,
    ylabel: str,
    group: str = "place",
    x: str = "interval_start",
    percent: bool = False,
) -> None:
    """One line per ``group`` value over time, to a PNG."""
    plt = agg_pyplot()
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.ticker import PercentFormatter

    figure, axes = plt.subplots(figsize=(11, 5), layout="constrained")
    for name, (times, values) in sorted(series_by(rows, group, x, y).items()):
        axes.plot(times, values, label=name, linewidth=1.8, marker="o" if len(times) < 15 else None)
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if percent:
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small", ncols=2)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_compared(rows: Sequence[dict], title: str, path: Path, figure_name: str, group: str = "place") -> None:
    """Each place's figure this period (solid) and the same intervals last year (dashed, on this year's times)."""
    plt = agg_pyplot()
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    figure, axes = plt.subplots(figsize=(11, 5), layout="constrained")
    now = series_by(rows, group, "interval_start", figure_name)
    before = series_by(rows, group, "interval_start", f"{figure_name}_last_year")
    for name, (times, values) in sorted(now.items()):
        (line,) = axes.plot(times, values, label=f"{name}", linewidth=1.8)
        if name in before:
            axes.plot(*before[name], label=f"{name} last year", linewidth=1.2, linestyle="--", color=line.get_color())
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_title(title)
    axes.set_ylabel(f"{figure_name} per interval")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small", ncols=2)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot(rows: Sequence[dict], title: str, path: Path) -> None:
    """People in per interval, one line per place, to a PNG."""
    plot_lines(rows, title, path, y="in", ylabel="people in per interval")


def plot_periods(rows: Sequence[dict], title: str, path: Path) -> None:
    """Visitors per period as bars, one colour per place, each bar labelled with its share."""
    plt = agg_pyplot()
    import numpy as np

    periods = sorted({row["period"] for row in rows})
    places = sorted({row["place"] for row in rows})
    figures = {(row["period"], row["place"]): row for row in rows}
    width = 0.8 / max(len(places), 1)
    figure, axes = plt.subplots(figsize=(11, 5), layout="constrained")
    for number, place in enumerate(places):
        found = [figures.get((period, place)) for period in periods]
        bars = axes.bar(
            np.arange(len(periods)) + number * width, [row["in"] if row else 0 for row in found], width, label=place
        )
        axes.bar_label(bars, labels=[f"{row['share']:.0%}" if row else "" for row in found], fontsize="x-small")
    axes.set_xticks(
        np.arange(len(periods)) + width * (len(places) - 1) / 2,
        [dt.date.fromisoformat(period).strftime("%a %d %b") for period in periods],
    )
    axes.set_title(title)
    axes.set_ylabel("visitors in (label: share)")
    axes.grid(alpha=0.3, axis="y")
    axes.legend(loc="upper left", fontsize="small", ncols=2)
    figure.savefig(path, dpi=110)
    plt.close(figure)
