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
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed
from tqdm import tqdm

from .sending import Deliveries, broker_errors, client_limits, producer_limits
from .settings import Settings, Worker
from .simulators.pacing import Pacer
from .streams import topics
from .streams.records import DEVICE_TYPES, dead_letter, encode
from .transports import kafka_options


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
    with broker_errors(kafka):
        topics.ensure_topics(
            kafka.bootstrap_servers,
            kafka.partitions,
            kafka.replication_factor,
            settings.worker.app_id,
            {**kafka_options(kafka), **client_limits(kafka)},
        )
    started = time.monotonic()
    pacer = Pacer(speed)
    with (
        broker_errors(settings.kafka),
        Deliveries(
            KafkaProducer(
                bootstrap_servers=settings.kafka.bootstrap_servers,
                linger_ms=10,
                batch_size=1 << 18,
                acks="all",
                **kafka_options(settings.kafka),
                **producer_limits(settings.kafka),
            )
        ) as hub,
    ):
        with (
            path.open("rb") as handle,
            tqdm(
                handle, total=_count_lines(path), unit="ev", desc=f"replay {path.name}", disable=not progress
            ) as lines,
        ):
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
                    hub.send(topics.DEAD_LETTERS.name, key=letter.dead_letter_id.encode(), value=encode(letter))
                    report.dead_letters += 1
                    continue
                pacer.wait_for(_event_time(event))
                key = topics.INPUT_KEYS[kind](event)
                if kind in DEVICE_TYPES and not event.get("event_id"):
                    line = _with_event_id(event, lineno, line)
                hub.send(topics.INPUT_TOPICS[kind].name, key=key.encode() if key else None, value=line)
                report.sent += 1
        hub.flush()
    report.seconds = time.monotonic() - started
    return report


def consumer_groups(worker: Worker) -> dict[str, list[str]]:
    """The workers' consumer groups and the topics each reads: their faust agents' and their batch lanes'."""
    from .streams.app import SUNK_TOPICS

    app_id = worker.app_id
    groups = {
        topics.lane_group(app_id, "routes"): [spec.name for spec in topics.ROUTED],
        topics.lane_group(app_id, "members"): [spec.name for spec in topics.MEMBER_INPUTS],
        topics.lane_group(app_id, "receipts"): [topics.POS_TRANSACTIONS.name],
        topics.lane_group(app_id, "malls"): [spec.name for spec in topics.MALL_INPUTS],
        topics.lane_group(app_id, "sinks"): [spec.name for spec, _ in SUNK_TOPICS],
    }
    # the faust agents are the VIP agents: in the worker, or in a VIP worker of its own with its own routes lane
    vip = topics.vip_app_id(app_id) if worker.vip_worker.separate else app_id
    groups[vip] = [spec.name for spec in topics.VIP_AGENT_INPUTS]
    groups[topics.lane_group(vip, "presence")] = [spec.name for spec in topics.PRESENCE_INPUTS]
    if worker.vip_worker.separate:
        groups[topics.lane_group(vip, "routes")] = [spec.name for spec in topics.VIP_ROUTED]
    return groups


#: A group's position on a partition, by (group, partition).
Positions = dict[tuple[str, TopicPartition], int]


@dataclass
class Offsets:
    """Where the groups are: committed (else the start), and the start and end of each partition they read."""

    committed: Positions
    starts: Positions
    ends: Positions

    def lag(self) -> int:
        """Messages not yet committed."""
        return sum(max(self.ends[key] - position, 0) for key, position in self.committed.items())

    def done_since(self, baseline: Positions) -> int:
        """Messages committed since ``baseline``; a partition it does not know counts from its start."""
        return sum(position - baseline.get(key, self.starts[key]) for key, position in self.committed.items())


class GroupOffsets:
    """How far consumer groups (default: the worker's) got on the topics they read: one admin client and consumer.

    Sinks commit only what is stored, so a group at the end of its topics has processed and stored everything.
    A broker that stays away longer than ``kafka.unreachable_timeout_s`` raises :class:`BrokerError`.
    """

    def __init__(self, settings: Settings, groups: Mapping[str, Sequence[str]] | None = None) -> None:
        conf = settings.kafka
        self._conf = conf
        self._groups = groups or consumer_groups(settings.worker)
        self._retrying = Retrying(
            retry=retry_if_exception_type(KafkaError),
            stop=stop_after_delay(conf.unreachable_timeout_s),
            wait=wait_fixed(0.5),
            reraise=True,
        )
        options = {**kafka_options(conf), **client_limits(conf)}
        with broker_errors(conf):
            self._admin = KafkaAdminClient(
                bootstrap_servers=conf.bootstrap_servers, client_id="mallstream-replay", **options
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=conf.bootstrap_servers, enable_auto_commit=False, **options
            )

    def read(self) -> Offsets:
        """Every group's committed position and the partitions it reads (a broker hiccup is retried)."""
        with broker_errors(self._conf):
            return self._retrying(self._read)

    def _read(self) -> Offsets:
        offsets = Offsets({}, {}, {})
        for group, names in self._groups.items():
            partitions = [
                TopicPartition(name, p)
                for name in names
                for p in sorted(self._consumer.partitions_for_topic(name) or ())
            ]
            ends = self._consumer.end_offsets(partitions)
            starts = self._consumer.beginning_offsets(partitions)
            done = self._admin.list_group_offsets({group: partitions}).get(group, {})
            for tp in partitions:
                key = group, tp
                offsets.starts[key], offsets.ends[key] = starts[tp], ends[tp]
                offsets.committed[key] = done[tp].offset if tp in done and done[tp].offset >= 0 else starts[tp]
        return offsets

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()

    def __enter__(self) -> GroupOffsets:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def wait_until_processed(
    settings: Settings,
    timeout: float = 600.0,
    progress: bool = True,
    groups: Mapping[str, Sequence[str]] | None = None,
    since: Positions | None = None,
) -> bool:
    """Block until the groups (default: the worker's) have no lag twice in a row; False on timeout.

    The bar counts the messages the groups committed since ``since`` (default: since the wait began)
    against those plus the lag left; partitions new since then count from their beginning.
    """
    deadline = time.monotonic() + timeout
    clear_checks = 0
    with GroupOffsets(settings, groups) as offsets:
        now = offsets.read()
        baseline = now.committed if since is None else since
        total = now.done_since(baseline) + now.lag()
        with tqdm(desc="processing", unit="msg", total=total, disable=not progress) as bar:
            while time.monotonic() < deadline:
                lag, done = now.lag(), now.done_since(baseline)
                bar.total, bar.n = done + lag, done
                bar.refresh()
                clear_checks = clear_checks + 1 if lag == 0 else 0
                if clear_checks >= 2:
                    return True
                time.sleep(0.5)
                now = offsets.read()
    return False
