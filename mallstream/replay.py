"""Feeding a JSON-lines file of events into the hub, and waiting until it is all stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from tqdm import tqdm

from .settings import Settings, Worker
from .simulators.pacing import Pacer
from .transports import kafka_options
from .streams import topics
from .streams.records import DEVICE_TYPES, dead_letter, encode


@dataclass
class ReplayReport:
    sent: int = 0
    dead_letters: int = 0
    seconds: float = 0.0


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _with_event_id(event: dict, lineno: int, line: bytes) -> bytes:
    """A device event given the id of its line: replaying the same file again stores nothing twice."""
    digest = hashlib.blake2b(b"%d\0%s" % (lineno, line), digest_size=16).hexdigest()
    return msgspec.json.encode({**event, "event_id": digest})


def _event_time(event: dict) -> float | None:
    try:
        return dt.datetime.fromisoformat(event["ts"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def replay(settings: Settings, path: Path, speed: float = 0.0, progress: bool = True) -> ReplayReport:
    """Send every line to its input topic, keyed as the topic requires.

    A line that is not a JSON object with a known ``type`` goes to the dead-letter
    topic with its file and line number. ``speed`` > 0 keeps the events' own
    spacing in time, sped up by that factor; 0 sends as fast as the broker takes them.
    """
    report = ReplayReport()
    # a replay may come before any worker: left to the broker, its topics would get one partition
    kafka = settings.kafka
    topics.ensure_topics(kafka.bootstrap_servers, kafka.partitions, kafka.replication_factor, settings.worker.app_id,
                         kafka_options(kafka))
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=10, batch_size=1 << 18, acks="all",
        **kafka_options(settings.kafka),
    )
    started = time.monotonic()
    pacer = Pacer(speed)
    try:
        with path.open("rb") as handle, tqdm(
            handle, total=_count_lines(path), unit="ev", desc=f"replay {path.name}", disable=not progress
        ) as lines:
            for lineno, line in enumerate(lines, 1):
                line = line.strip()
                if not line:
                    continue
                source = f"replay:{path.resolve()}:{lineno}"
                try:
                    event = msgspec.json.decode(line)
                    if not isinstance(event, dict):
                        raise ValueError("a line must be one JSON object")
                    kind = event.get("type")
                    if kind not in topics.INPUT_TOPICS:
                        raise ValueError(f"type must be one of {sorted(topics.INPUT_TOPICS)}, got {kind!r}")
                except (msgspec.DecodeError, ValueError) as exc:
                    letter = dead_letter(source, str(exc), line)
                    producer.send(topics.DEAD_LETTERS.name, key=letter.dead_letter_id.encode(), value=encode(letter))
                    report.dead_letters += 1
                    continue
                pacer.wait_for(_event_time(event))
                key = topics.INPUT_KEYS[kind](event)
                if kind in DEVICE_TYPES and not event.get("event_id"):
                    line = _with_event_id(event, lineno, line)
                producer.send(topics.INPUT_TOPICS[kind].name, key=key.encode() if key else None, value=line)
                report.sent += 1
        producer.flush()
    finally:
        producer.close()
    report.seconds = time.monotonic() - started
    return report


def consumer_groups(worker: Worker) -> dict[str, list[str]]:
    """The workers' consumer groups and the topics each reads: their faust agents' and their batch lanes'."""
    from .streams.app import SUNK_TOPICS

    app_id = worker.app_id
    groups = {app_id: [spec.name for spec in topics.AGENT_INPUTS],
              topics.lane_group(app_id, "routes"): [spec.name for spec in topics.ROUTED],
              topics.lane_group(app_id, "sinks"): [spec.name for spec, _ in SUNK_TOPICS]}
    if worker.vip_worker.separate:
        vip = topics.vip_app_id(app_id)
        groups[vip] = [spec.name for spec in topics.VIP_AGENT_INPUTS]
        groups[app_id] = [name for name in groups[app_id] if name not in groups[vip]]
        groups[topics.lane_group(vip, "routes")] = [spec.name for spec in topics.VIP_ROUTED]
    return groups


def pipeline_lag(settings: Settings, groups: Mapping[str, Sequence[str]] | None = None) -> int:
    """Messages not yet committed by the groups (default: the worker's) on the topics they read.

    Sinks commit only what is stored, so zero lag means processed and stored.
    """
    servers = settings.kafka.bootstrap_servers
    admin = KafkaAdminClient(bootstrap_servers=servers, client_id="mallstream-replay", **kafka_options(settings.kafka))
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, **kafka_options(settings.kafka))
    try:
        lag = 0
        for group, names in (groups or consumer_groups(settings.worker)).items():
            partitions = [TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())]
            ends = consumer.end_offsets(partitions)
            starts = consumer.beginning_offsets(partitions)
            committed = admin.list_group_offsets({group: partitions}).get(group, {})
            for tp in partitions:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                lag += max(ends[tp] - position, 0)
        return lag
    finally:
        consumer.close()
        admin.close()


def wait_until_processed(settings: Settings, timeout: float = 600.0, progress: bool = True,
                         groups: Mapping[str, Sequence[str]] | None = None) -> bool:
    """Block until the groups (default: the worker's) have no lag twice in a row; False on timeout."""
    deadline = time.monotonic() + timeout
    clear_checks = 0
    with tqdm(desc="processing", unit="msg", disable=not progress) as bar:
        while time.monotonic() < deadline:
            lag = pipeline_lag(settings, groups)
            bar.set_postfix(lag=lag)
            bar.refresh()
            clear_checks = clear_checks + 1 if lag == 0 else 0
            if clear_checks >= 2:
                return True
            time.sleep(0.5)
    return False
