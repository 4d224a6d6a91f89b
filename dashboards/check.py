"""Running dashboards' SQL against the hub's ClickHouse, as Grafana would for a time range."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from mallstream.querying import QueryError, json_rows, session
from mallstream.settings import Settings

from .clickhouse import ALL, Expansion
from .schema import Problem, validate

#: Data points a panel asks for, as Grafana's default max data points gives the interval.
DATA_POINTS = 300


@dataclass(frozen=True)
class PanelResult:
    dashboard: str
    panel: str
    rows: list[dict]
    error: str = ""


def expansion(board: dict, mall_id: str, start: dt.datetime, end: dt.datetime) -> Expansion:
    """The board's variables as Grafana shows it first: this mall, and "All" of every multi-value variable."""
    variables = {item["name"]: [ALL] if item.get("multi") else [mall_id] for item in board["templating"]["list"]}
    interval_s = max(60, int((end - start).total_seconds()) // DATA_POINTS)
    return Expansion(start, end, interval_s, variables)


def panel_results(
    settings: Settings, board: dict, mall_id: str, start: dt.datetime, end: dt.datetime
) -> Iterator[PanelResult]:
    """Each template variable's query and each panel's queries run for the range; a failing query is its error."""
    expand = expansion(board, mall_id, start, end)
    queries = [(f"variable ${item['name']}", [item["query"]]) for item in board["templating"]["list"]]
    queries += [
        (panel["title"], [target["rawSql"] for target in panel.get("targets", [])]) for panel in board["panels"]
    ]
    with session(settings) as ask:
        for title, sqls in queries:
            found: list[dict] = []
            try:
                for sql in sqls:
                    found += json_rows(ask(expand.sql(sql), "json"))
            except (QueryError, KeyError, ValueError) as exc:
                yield PanelResult(board["title"], title, [], str(exc).strip().splitlines()[0][:500])
                continue
            yield PanelResult(board["title"], title, found)


def problems(
    settings: Settings, boards: list[dict], mall_id: str, start: dt.datetime, end: dt.datetime, require_data: bool
) -> list[Problem]:
    """Schema errors first, then every query that fails (or, with ``require_data``, returns nothing)."""
    found = validate(boards)
    for board in boards:
        for result in panel_results(settings, board, mall_id, start, end):
            if result.error:
                found.append(Problem(result.dashboard, result.panel, f"query failed: {result.error}"))
            elif require_data and not result.rows:
                found.append(Problem(result.dashboard, result.panel, "no rows for this range"))
    return found
