"""Running the worker: topics, schema, the devices' places, sink repair, then faust until a signal stops it."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable

import faust

from mallstream.settings import ConfigError, Settings
from mallstream.sinks.places import PLACES_COLUMNS, place_rows
from mallstream.sinks.warehouse import open_warehouse
from mallstream.transports import kafka_options

from .access import register_access
from .app import Hub, role_of
from .board import register_board
from .clickhouse_http import register_clickhouse_http
from .topics import ensure_topics
from .web import register_stats, register_views

log = logging.getLogger(__name__)


def run_worker(
    settings: Settings, extend: Callable[[Hub], None] | None = None, loglevel: str = "warning", vip: bool = False
) -> None:
    """Serve until SIGINT/SIGTERM. ``extend`` may add tasks or timers (the live demo does).

    ``vip``: run only the VIP agents, as the VIP worker of ``worker.vip_worker.separate``.
    """
    if vip and not settings.worker.vip_worker.separate:
        raise ConfigError(
            settings.source,
            "worker.vip_worker.separate",
            "`mallstream worker --vip` needs it true: "
            "otherwise every worker runs the VIP agents too, and alerts would go out twice",
        )
    role = role_of(settings, vip)
    created = ensure_topics(
        settings.kafka.bootstrap_servers,
        settings.kafka.partitions,
        settings.kafka.replication_factor,
        settings.worker.app_id,
        kafka_options(settings.kafka),
        retention_ms=settings.kafka.topic_retention_ms,
    )
    if created:
        log.info("created topics: %s", ", ".join(created))
    # the VIP worker writes nothing to ClickHouse (and chdb lets one process hold its directory)
    warehouse = None if role == "vip" else open_warehouse(settings.clickhouse)
    try:
        if warehouse is not None:
            warehouse.migrate()
            warehouse.insert("places", place_rows(settings, time.time_ns()), PLACES_COLUMNS)
        hub = Hub(settings, warehouse, role)
        register_access(hub)
        register_stats(hub)
        if warehouse is not None:
            hub.repair_sinks()
            register_views(hub)
            register_board(hub)
            register_clickhouse_http(hub)
        if extend is not None:
            extend(hub)
        worker = faust.Worker(hub.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
        # faust's terminal spinner sets the root logger to DEBUG so it can spin on every record:
        # every debug line of aiokafka's fetch loop was then formatted and dropped (a profile's top item)
        worker.spinner = None
        # what exists by now (modules, master data, the engine's bindings) lives as long as the process: out of
        # the collector's sight, a full collection walks only what the stream made since, not some 100 ms' worth
        gc.collect()
        gc.freeze()
        with contextlib.suppress(SystemExit):
            worker.execute_from_commandline()
    finally:
        if warehouse is not None:
            warehouse.close()
