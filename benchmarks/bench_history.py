"""``mallstream bench --history``: the long histories of ``simulate history`` through a throwaway broker and worker.

Per scenario (receipts, counter ticks, gate reads), each with a noida-db broker and a worker of its own:

* end to end, input events/s: from the first event replayed until every group has read everything;
* Kafka bytes per input event: key plus value of every record on every topic (inputs, the hub's own
  topics and the tables' changelogs), read back through kafka-python once the worker has caught up.
  The broker's data directory cannot tell: noida-db keeps records in memory and saves them as JSON;
* Kafka records per input event, and the largest record (a message over the broker's 1 MiB default
  is refused by real Kafka);
* ClickHouse rows per input event: rows of every active part of the hub's database, tables the
  materialized views fill included (duplicates a ReplacingMergeTree has not merged away yet count);
* the worker's peak RSS (VmHWM in /proc).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from mallstream.querying import rows
from mallstream.replay import replay, wait_until_processed
from mallstream.settings import Settings, load
from mallstream.simulators.history import SCENARIOS, History, history_config, record

from .bench_e2e import peak_rss_mb, stop_process, throwaway_hub
from .bench_vip_latency import scratch_config


@dataclass(frozen=True)
class HistoryRun:
    scenario: str
    events: int
    seconds: float
    kafka_records: int
    kafka_bytes: int
    largest_record: int
    #: topic -> bytes of key + value, for the topics that take most
    bytes_by_topic: dict[str, int]
    clickhouse_rows: int
    peak_rss_mb: float


def topic_volume(settings: Settings) -> tuple[int, int, int, dict[str, int]]:
    """(records, bytes of key + value, largest record, bytes per topic) over every topic but the broker's own.

    One partition at a time: noida-db answers a fetch with up to the partition limit of every partition
    asked, whatever the request's own limit, and a fetch of all would exceed what a client takes in one frame.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        receive_message_max_bytes=1 << 30,
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in sorted(consumer.topics())
            if not topic.startswith("__")
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions)
        records = size = largest = 0
        by_topic: Counter[str] = Counter()
        for tp in partitions:
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            while consumer.position(tp) < ends[tp]:
                for message in consumer.poll(timeout_ms=2000, max_records=100_000).get(tp, []):
                    if message.offset < ends[tp]:
                        length = len(message.key or b"") + len(message.value or b"")
                        records, size, largest = records + 1, size + length, max(largest, length)
                        by_topic[tp.topic] += length
        return records, size, largest, dict(by_topic)
    finally:
        consumer.close()


def _clickhouse_rows(settings: Settings) -> int:
    found = rows(
        settings,
        f"SELECT sum(rows) AS n FROM system.parts WHERE active AND "
        f"database = '{settings.clickhouse.database}' "
        "SETTINGS output_format_json_quote_64bit_integers = 0",
    )
    return int(found[0]["n"] or 0)


def history_settings(directory: Path, size: float, seed: int) -> tuple[Path, History]:
    """A scratch config (own broker, ports, state) with the history's counters and car parks, and the history."""
    base = yaml.safe_load(scratch_config(directory, directory / "members.csv").read_text())
    base["members"]["source"] = None
    base["kafka"]["trim"] = "off"  # every record the run produced is counted, changelogs included
    settings_path = directory / "history.yaml"
    settings_path.write_text(yaml.safe_dump(base, allow_unicode=True))
    history = History(load(settings_path).malls[0], size=size, seed=seed)
    settings_path.write_text(yaml.safe_dump(history_config(base, history), allow_unicode=True))
    return settings_path, history


def bench_scenario(scenario: str, size: float, seed: int = 7) -> HistoryRun:
    """Generate one scenario, replay it through a fresh broker and worker, and measure what it cost."""
    with tempfile.TemporaryDirectory(prefix=f"bench-history-{scenario}-") as scratch:
        directory = Path(scratch)
        config, history = history_settings(directory, size, seed)
        settings = load(config)
        recorded = record(history, scenario, directory / "events")
        with throwaway_hub(config, settings, directory / "worker.log") as worker:
            started = time.monotonic()
            replay(settings, recorded.path)
            if not wait_until_processed(settings, timeout=6 * 3600):
                raise RuntimeError(f"the worker did not catch up with {scenario} within 6 hours")
            seconds = time.monotonic() - started
            rss = peak_rss_mb(worker.pid)
            stored = _clickhouse_rows(settings)
            stop_process(worker)  # nothing more is produced while the topics are read
            records, size_bytes, largest, by_topic = topic_volume(settings)
    return HistoryRun(scenario, recorded.events, seconds, records, size_bytes, largest, by_topic, stored, rss)


def run(size: float, scenarios: tuple[str, ...] = SCENARIOS) -> Iterator[tuple[str, str]]:
    """Each scenario's figures as soon as it is measured: a full-size run takes hours."""
    for scenario in scenarios:
        found = bench_scenario(scenario, size)
        per_event = max(found.events, 1)
        yield from [
            (f"(history) {scenario}: input events", f"{found.events:,}"),
            (f"(history) {scenario}: end to end, events/s", f"{found.events / found.seconds:,.0f}"),
            (f"(history) {scenario}: Kafka bytes per input event", f"{found.kafka_bytes / per_event:,.0f}"),
            (f"(history) {scenario}: Kafka records per input event", f"{found.kafka_records / per_event:,.1f}"),
            (f"(history) {scenario}: largest Kafka record, bytes", f"{found.largest_record:,}"),
            *(
                (f"(history) {scenario}:   of which {topic}, bytes per input event", f"{size / per_event:,.0f}")
                for topic, size in sorted(found.bytes_by_topic.items(), key=lambda item: -item[1])[:6]
            ),
            (f"(history) {scenario}: ClickHouse rows per input event", f"{found.clickhouse_rows / per_event:,.2f}"),
            (f"(history) {scenario}: worker peak RSS, MiB", f"{found.peak_rss_mb:,.0f}"),
        ]
