"""Loyalty figures through a running worker: till authorisation latency, receipt-to-ledger latency.

``bench_authorisation``: sequential ``POST /authorise/`` calls (each placing a 1-cent hold),
timed at the caller, HTTP included. ``bench_receipt_latency``: receipts produced at a steady
rate straight to ``pos.transactions``; the time from each send to the first of its entries
on the ``ledger`` topic. ``run`` (``python -m benchmarks.bench_loyalty``, and a part of
``mallstream bench --e2e``) takes both through a fresh broker and worker.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from mallstream.auth import command_headers
from mallstream.settings import Settings, load
from mallstream.streams import topics
from mallstream.till_client import authorise, wait_until_serving
from mallstream.transports import kafka_options

from .bench_vip_latency import scratch_config


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2), "count": len(samples_ms)}


def bench_authorisation(
    port: int, member_id: str, count: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """p50/p99 in ms of ``count`` authorisations of 1 cent each, one after the other."""
    samples = []
    run = time.time_ns()
    for i in range(count):
        started = time.perf_counter()
        answer = authorise(port, headers, member_id=member_id, txn_id=f"bench-{run}-{i}", amount_cents=1)
        samples.append((time.perf_counter() - started) * 1000)
        if not answer.get("approved"):
            raise RuntimeError(f"authorisation refused during the bench: {answer}")
    return percentiles(samples)


def bench_receipt_latency(settings: Settings, count: int, per_second: float, members: int = 200) -> dict[str, float]:
    """p50/p99 in ms from sending a receipt to the first ledger entry of it, at a steady rate."""
    consumer = KafkaConsumer(
        topics.LEDGER.name,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
        **kafka_options(settings.kafka),
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    consumer.seek_to_end()
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                for record in records:
                    txn_id = json.loads(record.value)["txn_id"]
                    seen.setdefault(txn_id, time.perf_counter())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=0, **kafka_options(settings.kafka)
    )
    run = time.time_ns()
    store = settings.malls[0].stores[0].id
    now = dt.datetime.now(dt.UTC).astimezone()
    try:
        for i in range(count):
            txn_id = f"lat-{run}-{i}"
            receipt = {
                "type": "pos_transaction",
                "txn_id": txn_id,
                "store_id": store,
                "workstation_id": "bench",
                "seq": i,
                "ts": now.isoformat(),
                "business_day": now.date().isoformat(),
                "kind": "sale",
                "total": "12.30",
                "member_id": f"bench-member-{i % members}",
            }
            sent[txn_id] = time.perf_counter()
            producer.send(topics.POS_TRANSACTIONS.name, key=txn_id.encode(), value=json.dumps(receipt).encode())
            time.sleep(max(0.0, sent[txn_id] + 1 / per_second - time.perf_counter()))
        producer.flush()
        deadline = time.monotonic() + 60
        while len(seen.keys() & sent.keys()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        done.set()
        reader.join()
        producer.close()
        consumer.close()
    missing = count - len(seen.keys() & sent.keys())
    if missing:
        raise RuntimeError(f"{missing} receipts reached no ledger entry within 60 s")
    return percentiles([(seen[txn] - sent[txn]) * 1000 for txn in sent])


def _desk(config: Path, *args: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mallstream.cli",
            "-c",
            str(config),
            "loyalty",
            *args,
            "--by",
            "bench",
            "--why",
            "bench float",
        ],
        check=True,
        capture_output=True,
    )


def run(receipts: int = 3000, per_second: float = 200, authorisations: int = 300) -> list[tuple[str, str]]:
    """The loyalty latency figures through a fresh broker and worker: till authorisation on a quiet worker (a
    member given 100.00 of stored value first, through the service desk), then receipt to ledger at a steady rate."""
    from .bench_e2e import throwaway_hub  # bench_e2e imports this module

    with tempfile.TemporaryDirectory(prefix="bench-loyalty-") as scratch:
        directory = Path(scratch)
        members = directory / "members.csv"
        members.write_text("member_id,tier,name,epc,birthday\nbench-till,standard,Till,,\n")
        config = scratch_config(directory, members)
        settings = load(config)
        with throwaway_hub(config, settings, directory / "worker.log"):
            headers, port = command_headers(settings), settings.worker.web_port
            wait_until_serving(port, headers)
            _desk(config, "adjust", "bench-till", "--points", "10000", "--op-id", "bench-points")
            _desk(
                config,
                "rebate",
                "bench-till",
                "--strategy",
                "desk-5000",
                "--points",
                "10000",
                "--op-id",
                "bench-rebate",
            )
            auth = bench_authorisation(port, "bench-till", authorisations, headers)
            ledger = bench_receipt_latency(settings, receipts, per_second)
    return [
        ("(loyalty) till authorisation p50 ms, one till at a time", f"{auth['p50_ms']}"),
        ("(loyalty) till authorisation p99 ms", f"{auth['p99_ms']}"),
        (f"(loyalty) receipt to ledger p50 ms, {per_second:,.0f} receipts/s", f"{ledger['p50_ms']}"),
        ("(loyalty) receipt to ledger p99 ms", f"{ledger['p99_ms']}"),
    ]


if __name__ == "__main__":
    for name, figure in run():
        print(f"{name:<56} {figure:>12}")
