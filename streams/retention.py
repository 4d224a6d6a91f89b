"""The retention keeper: the worker trims from the broker what nothing of the hub needs any more.

Every ``kafka.trim_every_seconds`` it gathers each partition's watermarks, the offset from which
records are younger than ``kafka.keep_hours`` (ListOffsets by time), the offsets the hub's
consumer groups have committed and the changelog offsets its lanes' stores have checkpointed;
streams/core/retention.py decides, and DeleteRecords moves the low watermarks. noida-db, the
embedded broker, has no retention of its own: without this its data file only grows.

It runs inside the worker because only there are the stores' checkpoints known (each local
file keeps the changelog offset it holds up to). The main worker trims the topics; every
worker, the VIP worker too, trims its own stores' changelogs, and only while it is the one
member of each stateful lane's group: with several, a worker taking partitions over could
still need older changelog records.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import TopicPartition

from mallstream.replay import consumer_groups
from mallstream.settings import Settings, Worker
from mallstream.transports import kafka_options

from . import topics
from .core.retention import Partition, keep_since_ms, plan

if TYPE_CHECKING:
    from .app import Hub

log = logging.getLogger(__name__)
# faust's group members describe themselves in faust's own format, which kafka-python warns it cannot decode
logging.getLogger("kafka.admin._groups").addFilter(lambda record: "Unable to decode member" not in record.msg)

#: What a changelog needs for DeleteRecords: brokers refuse it on compact-only topics. No time-based retention.
DELETABLE_CHANGELOG = {"cleanup.policy": "compact,delete", "retention.ms": "-1"}

#: How the keeper's figures group the topics.
TOPIC_GROUPS = ("input", "internal", "changelog")


def topic_group(name: str) -> str:
    """input, internal or changelog."""
    if name.endswith("-changelog"):
        return "changelog"
    return "input" if name in {spec.name for spec in topics.INPUT_TOPICS.values()} else "internal"


def broker_data_bytes(settings: Settings) -> int | None:
    """What the embedded broker keeps on disk (its data directory); None for an external Kafka."""
    if settings.kafka.mode != "embedded":
        return None
    directory = settings.resolve(settings.kafka.data_dir)
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file()) if directory.is_dir() else None


def oldest_kept(consumer: KafkaConsumer, partitions: Iterable[TopicPartition]) -> dict[str, str | None]:
    """The timestamp (UTC, ISO) of the oldest record kept per topic group; None where a group's topics are empty."""
    found = consumer.offsets_for_times({tp: 0 for tp in partitions})
    oldest: dict[str, int] = {}
    for tp, first in found.items():
        if first is not None:
            group = topic_group(tp.topic)
            oldest[group] = min(oldest.get(group, first.timestamp), first.timestamp)
    return {
        group: dt.datetime.fromtimestamp(oldest[group] / 1000, dt.UTC).isoformat(timespec="seconds")
        if group in oldest
        else None
        for group in TOPIC_GROUPS
    }


def broker_summary(settings: Settings) -> str:
    """One line for `mallstream up`: the broker's data size and the oldest record kept per topic group."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False, **kafka_options(settings.kafka)
    )
    try:
        names = [spec.name for spec in topics.ALL_TOPICS] + [
            topics.changelog_topic(settings.worker.app_id, table) for table in topics.TABLES
        ]
        oldest = oldest_kept(consumer, _partitions(consumer, names))
    finally:
        consumer.close()
    return f"broker data {_mib(broker_data_bytes(settings))}; " + _oldest_line(oldest)


def _mib(size: int | None) -> str:
    return "n/a (external Kafka)" if size is None else f"{size / 2**20:,.1f} MiB"


def _oldest_line(oldest: Mapping[str, str | None]) -> str:
    return "oldest record kept: " + ", ".join(f"{group} {oldest.get(group) or '-'}" for group in TOPIC_GROUPS)


def _partitions(consumer: KafkaConsumer, names: Iterable[str]) -> list[TopicPartition]:
    return [TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())]


@dataclass
class RetentionReport:
    """What the last round found and did (the worker's ``/stats/`` shows it)."""

    trimming: bool
    at: str | None = None
    broker_data_bytes: int | None = None
    oldest_kept: dict[str, str | None] = field(default_factory=dict)
    #: consumer group -> records it has not read that would otherwise have gone
    held_back_by: dict[str, int] = field(default_factory=dict)
    #: why the changelogs are not trimmed, if they are not
    changelogs_kept: str | None = None
    deleted_records: int = 0

    def line(self) -> str:
        """The demo's live figures."""
        held = ", ".join(f"{group} ({count:,})" for group, count in self.held_back_by.items())
        return f"broker {_mib(self.broker_data_bytes)}, {_oldest_line(self.oldest_kept)}" + (
            f"; held back by {held}" if held else ""
        )


class RetentionKeeper:
    """Trims the hub's topics and its worker's changelogs as far as streams/core/retention.py allows."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = hub.settings
        self.report = RetentionReport(trimming=hub.settings.kafka.trims)
        self._deletable: set[str] = set()

    def install(self) -> None:
        """A task of the worker: a round at start, then every ``kafka.trim_every_seconds``."""
        self.hub.app.task(self._run)

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # a broker that does not answer now is asked again next round
                log.exception("retention keeper: the round failed; the next one tries again")
            await asyncio.sleep(self.settings.kafka.trim_every_seconds)

    async def round(self) -> RetentionReport:
        self.report = await asyncio.to_thread(self._round, self._checkpoints())
        return self.report

    def _changelogs(self) -> set[str]:
        """This worker's changelog topics: its lanes' stores'."""
        return {store.changelog for lane in self.hub.lanes for store in lane.stores.values()}

    def _stateful_groups(self) -> list[str]:
        """The consumer groups whose members hold state restored from these changelogs."""
        return [lane.group for lane in self.hub.lanes if lane.stores]

    def _checkpoints(self) -> dict[tuple[str, int], int]:
        """Changelog offsets the lanes' local stores have applied and persisted.

        Read in the event loop, between rebalances only: a rebalance closes and reopens the stores.
        """
        return {
            (store.changelog, partition): held.saved
            for lane in self.hub.lanes
            for store in lane.stores.values()
            for partition, held in store.held()
        }

    def _round(self, checkpoints: Mapping[tuple[str, int], int]) -> RetentionReport:
        kafka, worker = self.settings.kafka, self.settings.worker
        admin = KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=f"{self.hub.app.conf.id}-keeper",
            **kafka_options(kafka),
        )
        consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, **kafka_options(kafka)
        )
        try:
            changelogs = self._changelogs()
            names = sorted(changelogs) + ([spec.name for spec in topics.ALL_TOPICS] if self.hub.role != "vip" else [])
            partitions = _partitions(consumer, names)
            why_not = None
            if checkpoints and changelogs:
                crowded = {
                    group: len(found["members"])
                    for group, found in admin.describe_groups(self._stateful_groups()).items()
                    if len(found["members"]) > 1
                }
                if crowded:
                    why_not = (
                        f"several workers are in the groups {crowded}: "
                        "a worker taking partitions over may still need older records"
                    )
                    checkpoints = {}
            parts = self._partitions_now(admin, consumer, partitions, changelogs, checkpoints, worker)
            decided = plan(parts)
            deleted = 0
            if kafka.trims and decided.delete_before:
                self._make_deletable(admin, {topic for topic, _ in decided.delete_before if topic in changelogs})
                lows = {part.where: part.low for part in parts}
                admin.delete_records(
                    {TopicPartition(*where): offset for where, offset in decided.delete_before.items()}
                )
                deleted = sum(offset - lows[where] for where, offset in decided.delete_before.items())
                log.info("retention keeper: deleted %d records from %d partitions", deleted, len(decided.delete_before))
            if set(decided.held_by) - set(self.report.held_back_by):  # said once, not every round
                log.warning(
                    "retention keeper: records past kafka.keep_hours kept for consumer groups that have not "
                    "read them: %s",
                    ", ".join(f"{g} ({n:,})" for g, n in decided.held_by.most_common()),
                )
            return RetentionReport(
                trimming=kafka.trims,
                at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                broker_data_bytes=broker_data_bytes(self.settings),
                oldest_kept=oldest_kept(consumer, partitions),
                held_back_by=dict(decided.held_by.most_common()),
                changelogs_kept=why_not,
                deleted_records=self.report.deleted_records + deleted,
            )
        finally:
            consumer.close()
            admin.close()

    def _make_deletable(self, admin: KafkaAdminClient, changelogs: set[str]) -> None:
        """Changelogs created compact-only (by faust, or before the keeper) get ``delete`` too, without a retention."""
        names = sorted(changelogs - self._deletable)
        if not names:
            return
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs={"cleanup.policy": None}) for name in names],
            config_filter="ALL",
        ).get("topic", {})
        compact_only = [
            name for name in names if "delete" not in found.get(name, {}).get("cleanup.policy", {}).get("value", "")
        ]
        if compact_only:
            admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs=DELETABLE_CHANGELOG) for name in compact_only]
            )
            log.info(
                "retention keeper: changelogs %s made deletable (%s)", ", ".join(compact_only), DELETABLE_CHANGELOG
            )
        self._deletable.update(names)

    def _partitions_now(
        self,
        admin: KafkaAdminClient,
        consumer: KafkaConsumer,
        partitions: list[TopicPartition],
        changelogs: set[str],
        checkpoints: Mapping[tuple[str, int], int],
        worker: Worker,
    ) -> list[Partition]:
        lows, ends = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        plain = [tp for tp in partitions if tp.topic not in changelogs]
        since = keep_since_ms(int(time.time() * 1000), self.settings.kafka.keep_hours)
        newer = consumer.offsets_for_times({tp: since for tp in plain}) if plain else {}
        readers = consumer_groups(worker)
        wanted = {group: [tp for tp in plain if tp.topic in names] for group, names in readers.items()}
        committed = {
            group: admin.list_group_offsets({group: tps}).get(group, {}) for group, tps in wanted.items() if tps
        }
        parts = []
        for tp in partitions:
            if tp.topic in changelogs:
                parts.append(
                    Partition(
                        tp.topic,
                        tp.partition,
                        lows[tp],
                        ends[tp],
                        changelog=True,
                        checkpoint=checkpoints.get((tp.topic, tp.partition)),
                    )
                )
                continue
            offsets = {
                group: _offset(committed.get(group, {}).get(tp))
                for group, names in readers.items()
                if tp.topic in names
            }
            first = newer.get(tp)
            parts.append(Partition(tp.topic, tp.partition, lows[tp], ends[tp], first and first.offset, offsets))
        return parts

    def stats(self) -> dict:
        return asdict(self.report)


def _offset(committed: object) -> int | None:
    """A committed offset; None where the group has none (the broker answers -1)."""
    offset = getattr(committed, "offset", -1)
    return offset if offset >= 0 else None
