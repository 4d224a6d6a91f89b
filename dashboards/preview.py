"""Dashboards drawn from live data to PNG, laid out on Grafana's 24-column grid, for people without Grafana."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import functools
import itertools
import operator

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter
from matplotlib.gridspec import GridSpec

from .check import PanelResult

GRID_COLUMNS = 24
#: Colours of Grafana's dark theme for the threshold colours the boards use.
COLOURS = {"green": "#56A64B", "orange": "#FF9830", "red": "#E02F44", "blue": "#3274D9", "purple": "#A352CC"}
BACKGROUND, PANEL, TEXT = "#111217", "#181b1f", "#ccccdc"


def _numbers(row: dict) -> dict[str, float]:
    return {key: float(value) for key, value in row.items() if isinstance(value, int | float) and key != "time"}


def _threshold_colour(panel: dict, value: float) -> str:
    colour = "blue"
    for step in panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", []):
        if step.get("value") is None or value >= step["value"]:
            colour = step["color"]
    return COLOURS.get(colour, colour)


#: Grafana units the boards use: (factor, prefix, suffix) to write a value as Grafana shows it.
UNITS = {
    "percent": (1, "", " %"),
    "percentunit": (100, "", " %"),
    "ms": (1, "", " ms"),
    "s": (1, "", " s"),
    "m": (1, "", " min"),
    "currencyCNY": (1, "¥", ""),
}


def _formatted(panel: dict, value: float) -> str:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    factor, prefix, suffix = UNITS.get(unit, (1, "", ""))
    return f"{prefix}{value * factor:,.0f}{suffix}"


def _stat(axes: Axes, panel: dict, rows: list[dict]) -> None:
    values = [
        (next((v for v in row.values() if isinstance(v, str)), name), number)
        for row in rows
        for name, number in _numbers(row).items()
    ]
    if not values:
        return
    label, value = values[0]
    axes.set_facecolor(_threshold_colour(panel, value))
    axes.text(
        0.5,
        0.5,
        _formatted(panel, value),
        ha="center",
        va="center",
        fontsize=34,
        fontweight="bold",
        color="white",
        transform=axes.transAxes,
    )
    if len(values) == 1 and label != panel["title"]:
        axes.text(0.5, 0.12, label, ha="center", color="white", fontsize=10, transform=axes.transAxes)


def _series(axes: Axes, panel: dict, rows: list[dict]) -> None:
    """Long rows (time, a name column, values) become one line per name and value, as Grafana does."""
    lines: defaultdict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
    for row in rows:
        when = dt.datetime.fromisoformat(str(row["time"]))
        name = " ".join(str(v) for k, v in row.items() if isinstance(v, str) and k != "time")
        for column, value in _numbers(row).items():
            lines[f"{name} {column}".strip() if name else column].append((when, value))
    bars = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("drawStyle") == "bars"
    for label, points in sorted(lines.items()):
        times, values = zip(*points, strict=False)
        if bars:
            axes.bar(times, values, width=0.8 * _spacing(times), label=label, alpha=0.8)
        else:
            axes.plot(times, values, label=label, linewidth=1.8)
    axes.xaxis.set_major_formatter(
        DateFormatter(
            "%H:%M" if len({t.date() for t, _ in functools.reduce(operator.iadd, lines.values(), [])}) == 1 else "%m-%d"
        )
    )
    axes.legend(fontsize=7, loc="upper left", facecolor=PANEL, labelcolor=TEXT, framealpha=0.6)
    axes.grid(alpha=0.2)


def _spacing(times: tuple[dt.datetime, ...]) -> float:
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times) if b > a]
    return (min(gaps) if gaps else 3600) / 86400  # matplotlib's dates are days


def _bars(axes: Axes, panel: dict, rows: list[dict]) -> None:
    names = [" ".join(str(v) for v in row.values() if isinstance(v, str)) for row in rows]
    values = [next(iter(_numbers(row).values()), 0.0) for row in rows]
    axes.barh(names[::-1], values[::-1], color=COLOURS["green"])
    for y, value in enumerate(values[::-1]):
        axes.text(value, y, " " + _formatted(panel, value), va="center", color=TEXT, fontsize=8)


def _bar_chart(axes: Axes, panel: dict, rows: list[dict]) -> None:
    """Vertical bars, one group per row and one bar per numeric column, as Grafana's bar chart."""
    names = [str(row[panel["options"]["xField"]]) for row in rows]
    columns = list(_numbers(rows[0]))
    width = 0.8 / len(columns)
    for number, column in enumerate(columns):
        values = [_numbers(row)[column] for row in rows]
        positions = [index + (number - (len(columns) - 1) / 2) * width for index in range(len(rows))]
        axes.bar(positions, values, width, label=column)
        for x, value in zip(positions, values, strict=False):
            axes.text(x, value, _formatted(panel, value), ha="center", va="bottom", color=TEXT, fontsize=7)
    axes.set_xticks(range(len(rows)), names)
    if len(columns) > 1:
        axes.legend(fontsize=7, loc="upper right", facecolor=PANEL, labelcolor=TEXT, framealpha=0.6)


def _table(axes: Axes, panel: dict, rows: list[dict]) -> None:
    axes.axis("off")
    shown = rows[:8]
    columns = list(shown[0])
    cells = [[str(row[c])[:40] for c in columns] for row in shown]
    table = axes.table(cellText=cells, colLabels=columns, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for cell in table.get_celld().values():
        cell.set_facecolor(PANEL)
        cell.set_edgecolor("#2c3235")
        cell.get_text().set_color(TEXT)


DRAW = {"stat": _stat, "timeseries": _series, "bargauge": _bars, "barchart": _bar_chart, "table": _table}


def render(board: dict, results: list[PanelResult], path: Path) -> None:
    """One PNG of the board: each panel where its gridPos puts it, drawn from its query results."""
    by_title = {result.panel: result for result in results}
    panels = board["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(18, height * 0.42 + 1.0), facecolor=BACKGROUND)
    grid = GridSpec(
        height,
        GRID_COLUMNS,
        figure=figure,
        hspace=2.4,
        wspace=0.6,
        left=0.03,
        right=0.99,
        top=1 - 0.9 / (height * 0.42 + 1.0),
        bottom=0.03,
    )
    figure.suptitle(board["title"], color=TEXT, fontsize=16, x=0.02, ha="left")
    for panel in panels:
        place = panel["gridPos"]
        axes = figure.add_subplot(grid[place["y"] : place["y"] + place["h"], place["x"] : place["x"] + place["w"]])
        axes.set_facecolor(PANEL)
        axes.tick_params(colors=TEXT, labelsize=7)
        for spine in axes.spines.values():
            spine.set_color("#2c3235")
        axes.set_title(panel["title"], color=TEXT, fontsize=10, loc="left")
        result = by_title.get(panel["title"])
        if result is None or result.error or not result.rows:
            axes.text(
                0.5,
                0.5,
                result.error[:80] if result and result.error else "No data",
                ha="center",
                va="center",
                color=TEXT,
                transform=axes.transAxes,
            )
        else:
            DRAW[panel["type"]](axes, panel, result.rows)
        if panel["type"] in ("stat", "table") or result is None or not result.rows:
            axes.set_xticks([])
            axes.set_yticks([])
    figure.savefig(path, dpi=90, facecolor=BACKGROUND)
    plt.close(figure)
