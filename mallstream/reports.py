"""Footfall reports: in, out, total and net per interval and place, from the ClickHouse roll-ups.

The same SQL serves `mallstream report footfall` and the dashboards, so a panel and a
report never disagree. Intervals of an hour or more read the hourly roll-up, which outlives
the minute data; shorter ones read the minute roll-up. Times are the mall's local time.

``--by`` picks the counters and what they are summed by:

* ``entrance``, ``zone``, ``store``: counters placed at such a place, by place;
* ``floor``: counters at floor transitions (escalators, lifts, stairs: their place is a floor), by floor;
* ``counter``: every counter on its own.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .querying import quote

INTERVALS = {"5m": 5, "10m": 10, "15m": 15, "30m": 30, "60m": 60, "1h": 60, "1d": 1440}
GROUPINGS = ("entrance", "floor", "zone", "store", "counter")
FORMATS = ("table", "json", "csv")
COLUMNS = ("interval_start", "place", "in", "out", "total", "net")


@dataclass(frozen=True)
class FootfallQuery:
    mall_id: str
    timezone: str
    start: dt.datetime
    end: dt.datetime
    interval_minutes: int
    by: str

    def sql(self) -> str:
        """One row per interval and place: interval start (local), place, in, out, total, net."""
        return footfall_sql(quote(self.mall_id), self.timezone, _utc(self.start), _utc(self.end),
                            self.interval_minutes, self.by)


def footfall_sql(mall: str, timezone: str, start: str, end: str, interval_minutes: int, by: str,
                 places: str = "") -> str:
    """The footfall report's SQL with mall, start and end as SQL expressions, so a dashboard can pass macros.

    ``places`` is an extra condition on the places joined (``p``), for a dashboard's place filters.
    """
    hourly = interval_minutes % 60 == 0
    table, moment = ("footfall_hourly", "hour") if hourly else ("footfall_minute", "minute")
    if by == "counter":
        place, only = "f.counter_id", ""
    elif by == "floor":
        place, only = "p.floor", "AND p.place_kind = 'floor'"
    else:
        place, only = "p.place_id", f"AND p.place_kind = {quote(by)}"
    return f"""
        SELECT toStartOfInterval(toTimeZone(f.{moment}, {quote(timezone)}),
                                 INTERVAL {interval_minutes} MINUTE) AS interval_start,
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


def _utc(moment: dt.datetime) -> str:
    return f"toDateTime({quote(moment.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M:%S'))}, 'UTC')"


def render(rows: Sequence[dict], fmt: str) -> str:
    """The report as a table for people, or JSON / CSV for programs."""
    records = [{column: row[column] for column in COLUMNS} for row in rows]
    if fmt == "json":
        return json.dumps(records, ensure_ascii=False, indent=1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()
    from tabulate import tabulate

    return tabulate(records, headers="keys", intfmt=",", tablefmt="simple")


def plot(rows: Sequence[dict], title: str, path: Path) -> None:
    """People in per interval, one line per place, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    by_place: dict[str, list[tuple[dt.datetime, int]]] = {}
    for row in rows:
        by_place.setdefault(row["place"], []).append((dt.datetime.fromisoformat(row["interval_start"]), int(row["in"])))
    figure, axes = plt.subplots(figsize=(11, 5), layout="constrained")
    for place, points in sorted(by_place.items()):
        times, counts = zip(*points)
        axes.plot(times, counts, label=place, linewidth=1.8)
    axes.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))
    axes.set_title(title)
    axes.set_ylabel("people in per interval")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.savefig(path, dpi=110)
    plt.close(figure)
