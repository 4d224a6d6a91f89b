"""The car-park report: occupancy per car park over time, stay lengths and full-park alerts.

Occupancy is what the parking agent stored after each gate event; an interval shows the
last value (the occupancy at its end), the peak (at least what it started with: the one
before's end) and the cars in and out. An interval without a gate event keeps the occupancy
of the one before (``WITH FILL ... INTERPOLATE``), so the series is continuous. The gate-event
rows go after 90 days; the hourly roll-up (``parking_hourly``) is kept, and answers whole hours
and any range older than that (see :func:`mallstream.reports.reading`), so a day can be set beside the
same day last year (``--compare last-year``). Stays are counted in the
interval their car left; a stay whose entry was never read has no length and is left out of the means.

Fees come from ``parking_charges``: the fee table's price of a stay, or for a member's
car what its card settlement charged. ``fees`` is what was due after free parking
(paid in cash, points or stored value), ``free_exits`` the members' cars that left free
because their spend, points or tier earned it, and ``waived`` the fees those would have paid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from .querying import quote
from .reports import Grain, Reading, ReportWindow, agg_pyplot, interval_start_sql, reading, series_by

PARKING_COLUMNS = (
    "interval_start",
    "car_park",
    "capacity",
    "occupancy_end",
    "occupancy_peak",
    "entries",
    "exits",
    "mean_stay_min",
    "median_stay_min",
    "fees",
    "free_exits",
    "waived",
    "full_alerts",
)
ALERT_COLUMNS = ("at", "car_park", "message")
#: What ``--compare last-year`` sets beside each interval: cars in first (its change is the one given).
COMPARED_FIGURES = ("entries", "exits", "occupancy_peak")
PARKING_GRAINS = (Grain("gate event", "parking_occupancy", "ts", 1), Grain("hour", "parking_hourly", "hour", 60))

#: Per grain: the occupancy figures of an interval, and its cars in (a gate-event row that is no stay is an entry).
_OCCUPANCY_FIGURES = {
    "parking_occupancy": (
        """argMax(occupancy, (ts, event_id)) AS occupancy_end, max(occupancy) AS peak_seen,
                             toInt64(count()) AS gate_events""",
        "gate_events - exits",
    ),
    "parking_hourly": (
        """argMaxMerge(occupancy_end) AS occupancy_end, max(occupancy_peak) AS peak_seen,
                          sum(entries) AS entries_counted""",
        "entries_counted",
    ),
}


def parking_sql(window: ReportWindow, read: Reading | None = None) -> str:
    """One row per interval and car park, from its first gate event in the window to the window's end."""
    read = read or reading(PARKING_GRAINS, window)
    window, grain = read.window, read.grain
    mall, start, end = window.bounds()
    interval = window.interval_minutes
    figures, entries = _OCCUPANCY_FIGURES[grain.table]

    def per_interval(column: str) -> str:
        return interval_start_sql(column, window.timezone, interval)

    # WITH FILL carries the occupancy on through intervals without a gate event; an interval starts with what the
    # one before ended with, so its peak is at least that (cars parked over midnight count in the new day's peak)
    return f"""
        SELECT interval_start, car_park, capacity, occupancy_end,
               greatest(peak_seen, occupancy_end,
                        lagInFrame(occupancy_end) OVER (PARTITION BY car_park ORDER BY interval_start
                                                        ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)) AS occupancy_peak,
               {entries} AS entries, exits, mean_stay_min, median_stay_min, fees, free_exits, waived, full_alerts
        FROM (
            SELECT * FROM (
                SELECT {per_interval(grain.moment)} AS interval_start, car_park_id AS car_park,
                       max(capacity) AS capacity, {figures}
                FROM {{db}}.{grain.table}
                WHERE mall_id = {mall} AND {grain.moment} >= {start} AND {grain.moment} < {end}
                GROUP BY interval_start, car_park) AS o
            LEFT JOIN (
                SELECT {per_interval("exit")} AS interval_start, car_park_id AS car_park, count() AS exits,
                       round(avg(duration_s) / 60, 1) AS mean_stay_min,
                       round(quantileExact(0.5)(duration_s) / 60, 1) AS median_stay_min,
                       {_cents("charged_cents")} AS fees, countIf(waived_cents > 0) AS free_exits,
                       {_cents("waived_cents")} AS waived
                FROM {{db}}.parking_charges WHERE mall_id = {mall} AND exit >= {start} AND exit < {end}
                GROUP BY interval_start, car_park) AS s USING (interval_start, car_park)
            LEFT JOIN (
                SELECT {per_interval("ts")} AS interval_start, {_car_park_of_alert()} AS car_park,
                       count() AS full_alerts
                FROM {{db}}.alerts WHERE {_full_alerts(mall, start, end)}
                GROUP BY interval_start, car_park) AS a USING (interval_start, car_park)
            ORDER BY car_park, interval_start
                WITH FILL TO {end} STEP INTERVAL {interval} MINUTE INTERPOLATE (capacity, occupancy_end))
        ORDER BY car_park, interval_start
        SETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_decimals = 0"""


def _cents(column: str) -> str:
    """The sum of a cents column in currency units, exactly (a Decimal, not a float)."""
    return f"toDecimal64(sum(ifNull({column}, 0)), 2) / 100"


def alerts_sql(window: ReportWindow) -> str:
    """The full-park alerts raised in the window, oldest first."""
    mall, start, end = window.bounds()
    return f"""
        SELECT toTimeZone(ts, {quote(window.timezone)}) AS at, {_car_park_of_alert()} AS car_park, message
        FROM {{db}}.alerts WHERE {_full_alerts(mall, start, end)}
        ORDER BY at, car_park"""


def _full_alerts(mall: str, start: str, end: str) -> str:
    return f"kind = 'car_park_full' AND mall_id = {mall} AND ts >= {start} AND ts < {end}"


def _car_park_of_alert() -> str:
    """The car park a full-park alert is about: its id is ``car_park_full:<car park>:<time>``."""
    return "splitByChar(':', alert_id)[2]"


def plot_parking(rows: Sequence[dict], alerts: Sequence[dict], title: str, path: Path) -> None:
    """Occupancy against capacity per car park, alerts marked, and below it the mean stay of cars leaving."""
    plt = agg_pyplot()
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    figure, (occupied, stays) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, height_ratios=(2, 1), layout="constrained"
    )
    for car_park, (times, values) in sorted(series_by(rows, "car_park", "interval_start", "occupancy_peak").items()):
        (line,) = occupied.step(times, values, where="post", label=f"{car_park} peak", linewidth=1.8)
        capacity = max(row["capacity"] for row in rows if row["car_park"] == car_park)
        occupied.axhline(capacity, color=line.get_color(), linestyle="--", linewidth=1, label=f"{car_park} capacity")
        raised = [dt.datetime.fromisoformat(alert["at"]) for alert in alerts if alert["car_park"] == car_park]
        if raised:
            occupied.plot(
                raised, [capacity] * len(raised), "v", color="crimson", markersize=9, label=f"{car_park} full alert"
            )
    for car_park, (times, values) in sorted(series_by(rows, "car_park", "interval_start", "mean_stay_min").items()):
        stays.plot(times, values, marker=".", label=car_park)
    occupied.set_title(title)
    occupied.set_ylabel("cars parked")
    occupied.set_ylim(bottom=0)
    occupied.legend(loc="upper left", fontsize="small")
    stays.set_ylabel("mean stay of cars leaving (min)")
    stays.set_ylim(bottom=0)
    locator = AutoDateLocator()
    stays.xaxis.set_major_locator(locator)
    stays.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    for axes in (occupied, stays):
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
