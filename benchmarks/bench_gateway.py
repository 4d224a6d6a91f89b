"""Gateway throughput end to end: emulated devices -> serial pty, Mosquitto, HTTP -> gateway -> spool -> broker.

Unlike ``mallstream bench`` this needs a running broker and Mosquitto; it starts its own
gateway (in this process) on a free push port with a spool of its own::

    python -m benchmarks.bench_gateway 5000 --bootstrap 127.0.0.1:9092 --mqtt-port 1883
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import tempfile
from collections import Counter
from pathlib import Path

from mallstream.settings import GatewayConfig, Kafka, Mqtt, load
from mallstream.simulators.live import drive
from mallstream.simulators.mallday import MallDay, simulate
from mallstream.streams.records import PosTransaction

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "mall.example.yaml"
#: A day rich in every kind of device record: VIP reads, counter ticks every minute, parking.
BENCH_DAY = MallDay(visitors=2_000, vip_share=0.05, tick_seconds=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_gateway(events: int, bootstrap: str = "127.0.0.1:9092", mqtt_port: int = 1883) -> dict:
    """Play ``events`` device records of the example mall flat out through a fresh gateway; the rate is
    from the first send until the broker acknowledged the last message (the spool is empty)."""
    day = BENCH_DAY
    while True:
        records = [r for r in simulate(load(EXAMPLE_CONFIG).malls[0], day).events if not isinstance(r, PosTransaction)]
        if len(records) >= events:
            break
        day = dataclasses.replace(day, visitors=day.visitors * 2)
    records = records[:events]
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as spool_dir:
        settings = load(EXAMPLE_CONFIG).model_copy(
            update={
                "kafka": Kafka(mode="external", bootstrap_servers=bootstrap),
                "mqtt": Mqtt(mode="external", port=mqtt_port),
                "gateway": GatewayConfig(
                    http_host="127.0.0.1", http_port=_free_port(), spool_path=Path(spool_dir) / "spool.db"
                ),
            }
        )
        run = drive(settings, lambda emulators: emulators.play(records))
    delivered = sum(health.events for health in run.health.values())
    per_transport: Counter[str] = Counter()
    for device, played in run.played.items():
        per_transport[run.transports[device]] += played
    return {
        "records": len(records),
        "events_delivered": delivered,
        "seconds": round(run.seconds, 2),
        "events_per_s": round(delivered / run.seconds, 1),
        "records_per_transport": dict(per_transport),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=int)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    arguments = parser.parse_args()
    print(bench_gateway(arguments.events, arguments.bootstrap, arguments.mqtt_port))
