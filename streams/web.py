"""HTTP views on the worker: member lookup, SQL on the engine it owns, live counters.

The worker is the one process holding the embedded chdb directory, so other
processes (``mallstream sql``, ``mallstream member``) come through here while it runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re

from faust.web import Request, Response, View

from mallstream.sinks.warehouse import Warehouse

from .app import Hub
from .core.clickhouse_http import refusal_of
from .core.customers import AsOfError
from .customer_agents import parse_as_of
from .loyalty_web import answered_elsewhere, member_view, register_loyalty_views

SQL_FORMATS = {"tsv": "TabSeparatedWithNames", "json": "JSONEachRow"}
#: What a query over HTTP may set: how the result is written, nothing else.
OUTPUT_SETTING = re.compile(r"output_format_\w+|date_time_output_format")
SETTING_VALUE = re.compile(r"[\w.]+")


def output_settings(settings: object) -> dict[str, str]:
    """The output settings a /sql/ request asks for; raises ValueError for anything else."""
    if not isinstance(settings, dict):
        raise ValueError("settings must be an object")
    for name, value in settings.items():
        if not OUTPUT_SETTING.fullmatch(name) or not SETTING_VALUE.fullmatch(str(value)):
            raise ValueError(f"only output_format_* settings with plain values may be set, not {name}")
    return {name: str(value) for name, value in settings.items()}


def read_only_query(warehouse: Warehouse, query: str, fmt: str, settings: dict[str, str]) -> bytes:
    """The query run read-only, refused first if it writes a file or reads one (streams/core/clickhouse_http.py)."""
    _, [[formatted]] = warehouse.query(
        "SELECT formatQuery({query:String})", {"query": query.replace("{db}", warehouse.database)}
    )
    refusal = refusal_of(formatted)
    if refusal is not None:
        raise refusal
    return warehouse.raw(query, fmt, read_only=settings)


def register_views(hub: Hub) -> None:
    app = hub.app
    register_loyalty_views(hub)

    @app.page("/member/{member_id}/")
    async def member(web: View, request: Request, member_id: str) -> Response:
        """Member 360, answered by the worker that holds the member's card (others send the request on)."""
        elsewhere = await answered_elsewhere(hub, web, request, member_id)
        if elsewhere is not None:
            return elsewhere
        card = hub.loyalty.card(member_id)
        if card is None:
            return web.json({"member_id": member_id, "error": "unknown member"}, status=404)
        as_of = request.query.get("as_of")
        try:
            customer = hub.customers.view(member_id, as_of and parse_as_of(as_of, hub.customers.zone))
        except (AsOfError, ValueError) as exc:  # AsOfError: asked about a past the member's receipts already changed
            return web.json({"member_id": member_id, "error": str(exc)}, status=400)
        return web.json({**member_view(card, dt.datetime.now(dt.UTC)), **customer})

    @app.page("/sql/")
    class Sql(View):
        async def post(self, request: Request) -> Response:
            """A read-only query: nothing is written, and no file or URL is read through the engine."""
            try:
                body = json.loads(await request.read())
                query, fmt = body["query"], SQL_FORMATS.get(body.get("format", "tsv"))
                settings = output_settings(body.get("settings", {}))
                if not isinstance(query, str):
                    raise TypeError("query must be a string")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return self.json(
                    {
                        "error": f'the body must be JSON {{"query": "...", "format": "tsv|json", '
                        f'"settings": {{"output_format_...": "..."}}}}: {exc}'
                    },
                    status=400,
                )
            if fmt is None:
                return self.json({"error": f"format must be one of {sorted(SQL_FORMATS)}"}, status=400)
            try:
                output = await asyncio.to_thread(read_only_query, hub.warehouse, query, fmt, settings)
            except Exception as exc:  # the engine's own message is the useful answer
                return self.json({"error": str(exc)}, status=400)
            return self.bytes(output, content_type="text/plain")


def register_stats(hub: Hub) -> None:
    """Live counters of this worker process: its agents', its sinks' and its lanes', and the retention keeper's."""

    @hub.app.page("/stats/")
    async def stats(web: View, request: Request) -> Response:
        return web.json(
            {
                "counters": dict(hub.counters),
                "sinks": {name: vars(sink.stats) for name, (_, sink) in hub.sinks.items()},
                "lanes": {
                    lane.group: {
                        "batches": lane.batches,
                        "records": lane.records,
                        "held": sorted(lane.held) if lane.stores else None,
                        "changelog_records": lane.checkpoint.changelog_records,
                    }
                    for lane in hub.lanes
                },
                "retention": hub.keeper.stats(),
            }
        )
