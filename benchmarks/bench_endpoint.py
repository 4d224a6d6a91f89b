"""Latency of the live footfall board through the worker's ClickHouse endpoint, after a simulated day.

A throwaway hub (broker, Mosquitto, worker) takes a simulated mall day; then every query of the
footfall dashboard, expanded as Grafana expands it for that day, goes to the worker's ClickHouse
HTTP endpoint through clickhouse-connect (Native, as Grafana's clickhouse-go asks), round after
round, as a board refreshing every 10 s would. Printed: p50, p95 and the slowest query::

    python -m benchmarks.bench_endpoint --visitors 20000 --rounds 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import clickhouse_connect

from mallstream.auth import KeyStore
from mallstream.dashboards.check import expansion
from mallstream.dashboards.grafana import PROVISIONING, read_boards
from mallstream.replay import replay, wait_until_processed
from mallstream.simulators.mallday import MallDay

from .bench_e2e import recorded_day, throwaway_hub

BOARD = "mallstream-footfall"


def footfall_queries(mall_id: str, day: MallDay, zone: ZoneInfo) -> list[tuple[str, str]]:
    """(panel, SQL) of the footfall board for the simulated day, opening to closing."""
    return board_queries(
        mall_id, dt.datetime.combine(day.day, day.opening, zone), dt.datetime.combine(day.day, day.closing, zone)
    )


def board_queries(mall_id: str, start: dt.datetime, end: dt.datetime) -> list[tuple[str, str]]:
    """(panel, SQL) of the footfall board over [start, end), as Grafana would send them."""
    board = next(board for board in read_boards(PROVISIONING) if board["uid"] == BOARD)
    expand = expansion(board, mall_id, start, end)
    return [
        (panel["title"], expand.sql(target["rawSql"]))
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def bench_endpoint(visitors: int, rounds: int) -> dict[str, float]:
    """Replay a day of ``visitors``, then time ``rounds`` of the footfall board's queries; seconds per query."""
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as scratch:
        directory = Path(scratch)
        config, settings, day, recording = recorded_day(directory, visitors)
        mall = settings.malls[0]
        _, key = KeyStore.of(settings).create("bench", "analyst")
        with throwaway_hub(config, settings, directory / "worker.log"):
            replay(settings, recording, progress=False)
            if not wait_until_processed(settings, timeout=3600, progress=False):
                raise RuntimeError("the worker did not catch up within an hour")
            client = endpoint_client(settings.clickhouse.http_port, key)
            queries = footfall_queries(mall.id, day, ZoneInfo(mall.timezone))
            timings: dict[str, list[float]] = {}
            for _ in range(rounds):
                for panel, sql in queries:
                    started = time.perf_counter()
                    client.query(sql)
                    timings.setdefault(panel, []).append(time.perf_counter() - started)
    every = sorted(seconds for series in timings.values() for seconds in series)
    slowest = max(timings, key=lambda panel: statistics.median(timings[panel]))
    return {
        "queries": len(every),
        "p50": statistics.median(every),
        "p95": every[int(0.95 * (len(every) - 1))],
        "max": every[-1],
        "slowest_panel": slowest,
        "slowest_median": statistics.median(timings[slowest]),
    }


def endpoint_client(port: int, key: str):
    """clickhouse-connect on the endpoint, once it listens (the worker opens it after its web port)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return clickhouse_connect.get_client(host="127.0.0.1", port=port, username="bench", password=key)
        except clickhouse_connect.driver.exceptions.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    figures = bench_endpoint(args.visitors, args.rounds)
    print(
        f"footfall board through the ClickHouse endpoint, {args.visitors:,} visitors' day, "
        f"{figures['queries']} queries: p50 {figures['p50'] * 1000:.1f} ms, p95 {figures['p95'] * 1000:.1f} ms, "
        f"max {figures['max'] * 1000:.1f} ms; slowest panel {figures['slowest_panel']!r} "
        f"(median {figures['slowest_median'] * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
