"""The embedded engine as a read-only ClickHouse HTTP endpoint, for Grafana and any ClickHouse client.

Only the worker may open the chdb directory, so it serves the engine itself on
``clickhouse.http_host:http_port`` (aiohttp, in the worker's event loop). Each query runs
on a chdb connection of its own in a thread, ``clickhouse.http_concurrency`` at a time, so
neither the stream nor the sinks' inserts (their own connection) wait for a dashboard.
What a request may ask and how it is answered: :mod:`streams.core.clickhouse_http`.

Keys are the hub's API keys (:mod:`mallstream.auth`), analyst or admin, presented the ways
ClickHouse clients do: basic auth (any user name, the key as password), ``X-ClickHouse-User``/
``X-ClickHouse-Key``, ``?user=&password=``, or as the worker's other views take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import chdb
from aiohttp import BasicAuth, web
from chdb._chdb import query_result as QueryResult  # what a query answers: bytes and read statistics

from mallstream.auth import Gatekeeper, KeyStore, Refused

from .core.clickhouse_http import (
    CODECS,
    ClickHouseError,
    Limits,
    Request,
    answer_encoding,
    decode_body,
    engine_error,
    has_result_set,
    native_for_revision,
    output_format,
    parse_request,
    refusal_of,
    statement,
)

if TYPE_CHECKING:
    from .app import Hub

log = logging.getLogger(__name__)

#: what a caller's key must allow (mallstream.auth.PERMISSIONS: analyst, admin)
PERMISSION = "sql"
_CONTENT_TYPES = (
    ("JSON", "application/json; charset=UTF-8"),
    ("TabSeparated", "text/tab-separated-values; charset=UTF-8"),
    ("TSV", "text/tab-separated-values; charset=UTF-8"),
    ("CSV", "text/csv; charset=UTF-8"),
)


@dataclass
class Answer:
    """What the engine wrote, the format it is in (None: not a result set) and the X-ClickHouse-Summary."""

    body: bytes
    fmt: str | None
    summary: dict[str, str]


class Connection:
    """One chdb connection to the worker's engine, with the database its session uses."""

    def __init__(self, path: str, database: str) -> None:
        self.chdb = chdb.connect(path)
        self.database = ""
        self.use(database)

    def use(self, database: str) -> None:
        if database != self.database:
            self.run(f"USE `{database}`", "TabSeparated")
            self.database = database

    def run(self, sql: str, fmt: str, params: Mapping[str, str] | None = None) -> QueryResult:
        try:
            return self.chdb.query(sql, fmt, params=dict(params)) if params else self.chdb.query(sql, fmt)
        except RuntimeError as exc:  # chdb raises the engine's "Code: N. DB::Exception: ..." as RuntimeError
            raise engine_error(str(exc)) from None


class Engine:
    """The connections queries run on: at most one query each, so their number bounds how many run at once."""

    def __init__(self, path: str, database: str, count: int) -> None:
        self.database = database
        connections = [Connection(path, database) for _ in range(count)]
        row = connections[0].run("SELECT displayName(), revision(), timezone()", "TabSeparated").bytes().decode()
        name, revision, timezone = row.strip().split("\t")
        self.display_name, self.revision, self.timezone = name, int(revision), timezone
        self.free: asyncio.Queue[Connection] = asyncio.Queue()
        for connection in connections:
            self.free.put_nowait(connection)

    async def answer(self, request: Request) -> Answer:
        connection = await self.free.get()
        try:
            return await asyncio.to_thread(self._run, connection, request)
        finally:
            self.free.put_nowait(connection)

    def _run(self, connection: Connection, request: Request) -> Answer:
        escaped = request.sql.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")  # as params are
        formatted = connection.run("SELECT formatQuery({query:String})", "RawBLOB", {"query": escaped}).bytes().decode()
        refusal = refusal_of(formatted)
        if refusal is not None:
            raise refusal
        fmt = output_format(formatted, request.default_format)
        connection.use(request.database or self.database)
        result = connection.run(statement(request.sql, request.settings), fmt, request.params)
        body = result.bytes() or b""
        if fmt == "Native":
            body = native_for_revision(body, min(request.revision, self.revision))
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": "0",
            "written_bytes": "0",
            "result_bytes": str(len(body)),
            "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }
        return Answer(body, fmt if has_result_set(formatted) else None, summary)

    def close(self) -> None:
        while not self.free.empty():
            self.free.get_nowait().chdb.close()


def presented_key(request: web.Request) -> Mapping[str, str]:
    """The request's credentials as the gate reads them: ClickHouse's own ways become a bearer token."""
    key = request.headers.get("X-ClickHouse-Key", request.query.get("password"))
    return {"Authorization": f"Bearer {key}"} if key is not None else request.headers


def caller_name(request: web.Request) -> str:
    """The user name the client gave (ClickHouse's errors name it); the key decides who it is."""
    with contextlib.suppress(ValueError):
        return BasicAuth.decode(request.headers.get("Authorization", "")).login
    return request.headers.get("X-ClickHouse-User") or request.query.get("user") or "default"


class ClickHouseHttp:
    """The aiohttp application answering ``/`` (queries) and ``/ping``."""

    def __init__(self, engine: Engine, gate: Gatekeeper, limits: Limits) -> None:
        self.engine, self.gate, self.limits = engine, gate, limits

    def web_app(self, max_body: int) -> web.Application:
        app = web.Application(client_max_size=max_body)
        app.router.add_route("GET", "/ping", self.ping)
        app.router.add_route("*", "/", self.query)
        return app

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def query(self, request: web.Request) -> web.StreamResponse:
        headers = {
            "X-ClickHouse-Query-Id": request.query.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Timezone": request.query.get("session_timezone") or self.engine.timezone,
            "X-ClickHouse-Server-Display-Name": self.engine.display_name,
        }
        if request.method == "GET" and "query" not in request.query:
            return web.Response(text="Ok.\n", headers=headers)  # ClickHouse answers / as /ping
        try:
            self._admit(request)
            body = await request.read() if request.method == "POST" else b""
            text = decode_body(
                body, request.headers.get("Content-Encoding", ""), request.query.get("decompress") == "1"
            ).decode()
            if request.query.get("compress") == "1":
                raise ClickHouseError(
                    1,
                    "UNSUPPORTED_METHOD",
                    "compress=1 (ClickHouse's compressed blocks) is not "
                    "served: ask for HTTP compression (enable_http_compression=1, Accept-Encoding: "
                    f"{', '.join(CODECS)})",
                    400,
                )
            answer = await self.engine.answer(parse_request(request.query, text, self.limits))
        except ClickHouseError as error:
            return web.Response(
                status=error.status,
                text=error.text,
                headers={
                    **headers,
                    "X-ClickHouse-Exception-Code": str(error.code),
                    "Content-Type": "text/plain; charset=UTF-8",
                },
            )
        except UnicodeDecodeError:
            error = ClickHouseError(36, "BAD_ARGUMENTS", "the query is not UTF-8")
            return web.Response(status=400, text=error.text, headers=headers)
        headers["X-ClickHouse-Summary"] = json.dumps(answer.summary)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        if answer.fmt is not None:
            headers["X-ClickHouse-Format"] = answer.fmt
            headers["Content-Type"] = next(
                (kind for prefix, kind in _CONTENT_TYPES if answer.fmt.startswith(prefix)), "application/octet-stream"
            )
        body = answer.body
        encoding = (
            answer_encoding(request.headers.get("Accept-Encoding", ""))
            if request.query.get("enable_http_compression") == "1"
            else None
        )
        if encoding is not None and body:
            body = CODECS[encoding][1](body)
            headers["Content-Encoding"] = encoding
        return web.Response(body=body, headers=headers)

    def _admit(self, request: web.Request) -> None:
        try:
            self.gate.admit(presented_key(request), (PERMISSION,))
        except Refused as refused:
            log.warning("clickhouse http: refused %s from %s: %s", caller_name(request), request.remote, refused.reason)
            if refused.status == 401:
                raise ClickHouseError(
                    516,
                    "AUTHENTICATION_FAILED",
                    f"{caller_name(request)}: Authentication failed: "
                    f"password is incorrect, or there is no user with such name ({refused.reason}; "
                    "the password is a mallstream API key)",
                    401,
                ) from None
            raise ClickHouseError(
                497,
                "ACCESS_DENIED",
                f"{caller_name(request)}: Not enough privileges ("
                f"{refused.reason}): queries need an analyst or admin key",
                403,
            ) from None


def register_clickhouse_http(hub: Hub) -> None:
    """Serve the embedded engine over ClickHouse HTTP while the worker runs (``clickhouse.http_port``).

    A port that cannot be bound is logged and the worker goes on: the stream matters more than the dashboards.
    """
    conf = hub.settings
    clickhouse = conf.clickhouse
    if clickhouse.mode != "embedded" or clickhouse.http_port is None:
        return
    limits = Limits(
        clickhouse.http_max_execution_s, clickhouse.http_max_result_rows, clickhouse.http_max_result_mb * 1024 * 1024
    )
    gate = Gatekeeper(KeyStore.of(conf), conf.auth, hub.counters)

    async def serve() -> None:
        engine = Engine(
            os.path.realpath(clickhouse.path),
            clickhouse.database,  # as the warehouse opened it
            clickhouse.http_concurrency,
        )
        server = ClickHouseHttp(engine, gate, limits)
        runner = web.AppRunner(
            server.web_app(conf.worker.max_body_kb * 1024), access_log=None, auto_decompress=False, handle_signals=False
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, clickhouse.http_host, clickhouse.http_port).start()
            log.info("ClickHouse HTTP endpoint on %s:%s", clickhouse.http_host, clickhouse.http_port)
            await asyncio.Event().wait()
        except OSError as exc:
            log.error(
                "ClickHouse HTTP endpoint not served on %s:%s: %s", clickhouse.http_host, clickhouse.http_port, exc
            )
        finally:
            with contextlib.suppress(Exception):
                await runner.cleanup()
            engine.close()

    hub.app.task(serve)
