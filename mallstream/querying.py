"""Reading the hub's ClickHouse from a command, whoever holds the engine.

With the embedded engine only one process may open the chdb directory: while a worker
runs, it answers queries over its HTTP port; otherwise the command opens the engine itself.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from .services import port_open
from .settings import Settings


class QueryError(RuntimeError):
    """The engine refused the query; the message is the engine's own."""


def worker_answers(settings: Settings) -> bool:
    return settings.clickhouse.mode == "embedded" and port_open("127.0.0.1", settings.worker.web_port)


def raw(settings: Settings, query: str, fmt: str) -> bytes:
    """The result of ``query`` as the engine writes ``fmt`` (``tsv`` or ``json``: one JSON object per row)."""
    if worker_answers(settings):
        request = urllib.request.Request(
            f"http://127.0.0.1:{settings.worker.web_port}/sql/",
            data=json.dumps({"query": query, "format": fmt}).encode(), method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise QueryError(json.loads(exc.read()).get("error")) from None
    from .sinks.warehouse import open_warehouse
    from .streams.web import SQL_FORMATS

    warehouse = open_warehouse(settings.clickhouse)
    try:
        return warehouse.raw(query, SQL_FORMATS[fmt])
    except Exception as exc:  # the engine's own message is the useful answer
        raise QueryError(str(exc)) from None
    finally:
        warehouse.close()


def rows(settings: Settings, query: str) -> list[dict]:
    """The result of ``query`` as one dict per row."""
    return [json.loads(line) for line in raw(settings, query, "json").splitlines() if line]


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
