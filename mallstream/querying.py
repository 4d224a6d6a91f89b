"""Reading the hub's ClickHouse from a command, whoever holds the engine.

With the embedded engine only one process may open the chdb directory: while a worker
runs, it answers queries over its HTTP port; otherwise the command opens the engine itself.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from .auth import NO_KEY_HINT, command_headers
from .services import port_open
from .settings import Settings


class QueryError(RuntimeError):
    """The engine refused the query; the message is the engine's own."""


def worker_answers(settings: Settings) -> bool:
    return settings.clickhouse.mode == "embedded" and port_open("127.0.0.1", settings.worker.web_port)


#: Runs a query and returns what the engine wrote in a format (``tsv`` or ``json``).
RawQuery = Callable[[str, str], bytes]


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[RawQuery]:
    """Many queries through one connection: the worker's HTTP port, or the engine opened once.

    Opening chdb costs file descriptors it does not all give back, so a command running
    many queries (``dashboards check``) must not open it per query.
    """
    if worker_answers(settings):
        yield lambda query, fmt: _ask_worker(settings, query, fmt)
        return
    from .sinks.warehouse import open_warehouse
    from .streams.web import SQL_FORMATS

    warehouse = open_warehouse(settings.clickhouse)

    def ask_engine(query: str, fmt: str) -> bytes:
        try:
            return warehouse.raw(query, SQL_FORMATS[fmt])
        except Exception as exc:  # the engine's own message is the useful answer
            raise QueryError(str(exc)) from None

    try:
        yield ask_engine
    finally:
        warehouse.close()


def _ask_worker(settings: Settings, query: str, fmt: str) -> bytes:
    """The worker runs it read-only; a trailing SETTINGS clause travels beside the query, for it to add back."""
    statement, output = split_settings(query)
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.worker.web_port}/sql/",
        data=json.dumps({"query": statement, "format": fmt, "settings": output}).encode(),
        method="POST",
        headers=command_headers(settings),
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise QueryError(_error(exc)) from None


def _error(exc: urllib.error.HTTPError) -> str:
    body = exc.read()
    try:
        message = json.loads(body).get("error") or body.decode()
    except ValueError:
        message = f"{exc.code} {exc.reason}"
    return f"{message}; {NO_KEY_HINT}" if exc.code == 401 else message


#: A trailing ``SETTINGS a = 1, b = 0`` clause, which the worker takes as a field of its own.
_SETTINGS_CLAUSE = re.compile(
    r"(?is)\A(?P<statement>.*\S)\s+SETTINGS\s+(?P<clause>\w+\s*=\s*[\w.]+"
    r"(?:\s*,\s*\w+\s*=\s*[\w.]+)*)\s*;?\s*\Z"
)


def split_settings(query: str) -> tuple[str, dict[str, str]]:
    """The query without a trailing SETTINGS clause, and that clause's settings (the worker adds them back, read-only)."""
    found = _SETTINGS_CLAUSE.match(query)
    if not found:
        return query, {}
    pairs = (item.split("=", 1) for item in found["clause"].split(","))
    return found["statement"], {name.strip(): value.strip() for name, value in pairs}


def raw(settings: Settings, query: str, fmt: str) -> bytes:
    """The result of ``query`` as the engine writes ``fmt`` (``tsv`` or ``json``: one JSON object per row)."""
    with session(settings) as ask:
        return ask(query, fmt)


def json_rows(answer: bytes) -> list[dict]:
    """An answer in the ``json`` format as one dict per row."""
    return [json.loads(line) for line in answer.splitlines() if line]


def rows(settings: Settings, query: str) -> list[dict]:
    """The result of ``query`` as one dict per row."""
    return json_rows(raw(settings, query, "json"))


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
