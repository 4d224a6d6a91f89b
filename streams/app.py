"""The faust worker: thin agents around the rule core.

    pos.transactions --route--> pos.by_member --loyalty--> ledger --sink--> ClickHouse
       (receipts lane: sale_owners)   (members lane: cards, streams/loyalty_agents.py)
    anything malformed --------------------------------> deadletters --sink--> ClickHouse
    rfid.reads, footfall.ticks, parking.events, devices.health ----------sink--> ClickHouse
    rfid.reads --> VIP agents (streams/vip_agents.py) --> alerts, MQTT, vip.visits --sink--> ClickHouse
    pos.by_member --> customer agents (streams/customer_agents.py) --> alerts, customers.signals,
                      customers.snapshots --sink--> ClickHouse; pos.by_member --sink--> ClickHouse
    footfall.ticks, rfid.reads, pos.by_member, parking.events --> footfall and parking agents
        (streams/footfall_agents.py) --> visitor roll-ups, occupancy, days, stays --sink--> ClickHouse

Each ``--sink-->`` is a step of the sink lane (streams/lanes.py): a consumer group of its
own that reads the sunk topics a batch at a time and commits only after the insert.
Each agent reads table state, calls a pure function from ``streams.core``, writes
the state back and sends what the core returned. No exception escapes an agent:
an event that cannot be handled becomes a dead letter and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import faust
from aiokafka import ConsumerRecord
from faust.types import EventT

from mallstream.privacy import Pseudonym
from mallstream.settings import Settings
from mallstream.sinks.clickhouse import SourcePosition, TableSink, sourced
from mallstream.sinks.tables import (
    ALERTS_TABLE,
    AREA_DAYS_TABLE,
    AREA_OCCUPANCY_TABLE,
    AUDIT_TABLE,
    CUSTOMER_SNAPSHOTS_TABLE,
    DEAD_LETTERS_TABLE,
    DEVICE_HEALTH_TABLE,
    FOOTFALL_ROLLUPS_TABLE,
    FOOTFALL_TICKS_TABLE,
    LEDGER_TABLE,
    PARKING_EVENTS_TABLE,
    PARKING_OCCUPANCY_TABLE,
    PARKING_STAYS_TABLE,
    RECEIPTS_BY_MEMBER_TABLE,
    RECEPTION_TABLE,
    RFID_READS_TABLE,
    VIP_VISITS_TABLE,
    SinkTable,
)
from mallstream.sinks.warehouse import Warehouse
from mallstream.transports import faust_credentials

from . import framework_patches, topics
from .core.malls import MallDirectory
from .core.routing import route_receipt
from .customer_agents import CustomerAgents
from .footfall_agents import FootfallAgents
from .lanes import BatchLane, LaneStep
from .loyalty_agents import LoyaltyAgent
from .master_data import MasterData, load_master_data
from .paging import payload_limit
from .records import AuditRecord, InvalidEvent, PosTransaction, dead_letter, decode, encode
from .retention import RetentionKeeper
from .sale_owners import SaleOwners
from .topics import lane_group
from .vip_agents import VipAgents

log = logging.getLogger(__name__)

#: Topics stored as they are, each in its own ClickHouse table.
SUNK_TOPICS: tuple[tuple[topics.TopicSpec, SinkTable], ...] = (
    (topics.LEDGER, LEDGER_TABLE),
    (topics.DEAD_LETTERS, DEAD_LETTERS_TABLE),
    (topics.RFID_READS, RFID_READS_TABLE),
    (topics.FOOTFALL_TICKS, FOOTFALL_TICKS_TABLE),
    (topics.PARKING_EVENTS, PARKING_EVENTS_TABLE),
    (topics.DEVICE_HEALTH, DEVICE_HEALTH_TABLE),
    (topics.VIP_VISITS, VIP_VISITS_TABLE),
    (topics.ALERTS_DELIVERED, ALERTS_TABLE),
    (topics.RECEPTION, RECEPTION_TABLE),
    (topics.AUDIT, AUDIT_TABLE),
    (topics.POS_BY_MEMBER, RECEIPTS_BY_MEMBER_TABLE),
    (topics.CUSTOMER_SNAPSHOTS, CUSTOMER_SNAPSHOTS_TABLE),
    (topics.FOOTFALL_ROLLUPS, FOOTFALL_ROLLUPS_TABLE),
    (topics.FOOTFALL_AREAS, AREA_OCCUPANCY_TABLE),
    (topics.FOOTFALL_DAYS, AREA_DAYS_TABLE),
    (topics.PARKING_STAYS, PARKING_STAYS_TABLE),
    (topics.PARKING_OCCUPANCY, PARKING_OCCUPANCY_TABLE),
)

#: Device events as the gateway or a replay published them, perhaps without their mall.
RAW_DEVICE_TOPICS = frozenset(spec.name for spec in (topics.RFID_READS, topics.FOOTFALL_TICKS, topics.PARKING_EVENTS))

#: The most records the routes lane takes at once.
ROUTE_BATCH = 1000
#: The most records the members lane takes at once (a till's authorisation waits for its batch).
MEMBER_BATCH = 500
#: The most records the presence lane takes at once.
PRESENCE_BATCH = 500
#: The most records the malls lane takes at once (each a batch of one mall's events from the routes lane).
MALL_BATCH = 200
#: How long the broker may hold the sink lane's fetches to gather rows (at most half a sink's flush interval).
SINK_GATHER_S = 0.2


#: What one worker process runs: everything, everything but the VIP agents, or only those (``mallstream worker --vip``).
Role = Literal["all", "main", "vip"]


def role_of(settings: Settings, vip: bool) -> Role:
    """The role of ``mallstream worker [--vip]`` under these settings."""
    if vip:
        return "vip"
    return "main" if settings.worker.vip_worker.separate else "all"


def _origin(source: EventT | ConsumerRecord) -> str:
    """Where an event or a lane's record was read: topic:partition:offset."""
    where = source if isinstance(source, ConsumerRecord) else source.message
    return f"{where.topic}:{where.partition}:{where.offset}"


@dataclass
class Hub:
    """The faust app with its topics, tables, agents and sinks, built from the settings.

    ``warehouse`` is None only in the VIP worker, which writes nothing to ClickHouse.
    """

    settings: Settings
    warehouse: Warehouse | None
    role: Role = "all"
    counters: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        conf = self.settings
        vip_only = self.role == "vip"
        app_id = topics.vip_app_id(conf.worker.app_id) if vip_only else conf.worker.app_id
        datadir = conf.worker.state_dir / "vip" if vip_only else conf.worker.state_dir
        datadir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
        #: where the lanes keep their stores' local files
        self.lanes_dir = datadir / "lanes"
        framework_patches.install(
            broker_long_polls=conf.kafka.broker_long_polls,
            flush_timeout_s=conf.kafka.flush_timeout_s,
            empty_fetch_wait_ms=conf.worker.vip_worker.empty_fetch_wait_ms
            if vip_only
            else conf.kafka.empty_fetch_wait_ms,
        )
        self.app = faust.App(
            app_id,
            broker=f"kafka://{conf.kafka.bootstrap_servers}",
            broker_credentials=faust_credentials(conf.kafka),
            # faust keeps no table: every state is a lane's store (streams/state/)
            store="memory://",
            datadir=str(datadir),
            web_port=conf.worker.vip_worker.web_port if vip_only else conf.worker.web_port,
            web_host="127.0.0.1",
            # larger bodies are refused (413); streams/access.py refuses an announced one before reading it
            web_application_options={"client_max_size": conf.worker.max_body_kb * 1024},
            topic_partitions=conf.kafka.partitions,
            topic_replication_factor=conf.kafka.replication_factor,
            topic_disable_leader=True,
            key_serializer="raw",
            value_serializer="raw",
            # the VIP worker sends at once (its lane's flush would wait the linger out); the others batch a little more
            producer_linger=0.0 if vip_only else 0.01,
            producer_max_request_size=conf.kafka.max_request_size,
            # sinks hold offsets until their rows are stored; at shutdown those are simply redelivered
            stream_wait_empty=False,
            # a worker that died holds its partitions until the group gives up on it: keep that short
            broker_session_timeout=conf.worker.session_timeout,
            broker_rebalance_timeout=conf.worker.session_timeout,
            broker_heartbeat_interval=conf.worker.session_timeout / 10,
            consumer_group_instance_id=conf.worker.group_instance_id,
            autodiscover=False,
        )
        #: the most bytes a record's value may take (streams/paging.py splits and pages to stay within it)
        self.payload_limit = payload_limit(conf.kafka.max_request_size)
        self.topics = {
            spec.name: self.app.topic(spec.name, partitions=conf.kafka.partitions) for spec in topics.ALL_TOPICS
        }
        #: EPCs and plates reach ClickHouse only as keyed hashes (mallstream/privacy.py)
        self.pseudonym = Pseudonym.of(conf)
        #: where events that name no mall belong: every stored row carries its mall
        self.malls = MallDirectory(conf.malls)
        self.master = master = load_master_data(conf.members.source and conf.resolve(conf.members.source))
        #: stateless re-keying (VIP reads by member; ticks, badges, sales and gate events by mall), a batch at a
        #: time as soon as it is read: a message per event would cost more in faust than the routing itself
        self.route_lane = BatchLane(self.app, conf.kafka, conf.worker, lane_group(app_id, "routes"), ROUTE_BATCH, 0.0)
        self.lanes = [self.route_lane]
        #: topic -> (what its records become, the sink writing them)
        self.sinks: dict[str, tuple[SinkTable, TableSink]] = {}
        if not vip_only:
            self._add_main_agents(master)
        if self.role != "main":
            #: the VIP presence core reads members' reads, ticks and receipts a batch at a time, with their presence as
            #: the lane's store; a batch is what one fetch brings, so an arrival waits for no other
            self.presence_lane = BatchLane(
                self.app, conf.kafka, conf.worker, lane_group(app_id, "presence"), PRESENCE_BATCH, 0.0
            )
            self.lanes.append(self.presence_lane)
            self.vip = VipAgents(self, master, self.presence_lane, self.route_lane)
        for lane in self.lanes:
            lane.install()
        if not self.app.agents:
            # the main worker beside a VIP worker, without webhooks: every input is a lane's, faust reads nothing
            self.app.boot_strategy.enable_kafka_consumer = False
        self.keeper = RetentionKeeper(self)
        self.keeper.install()

    def _add_main_agents(self, master: MasterData) -> None:
        """Everything but the VIP agents: receipts, loyalty, customers, footfall, parking and the sinks."""
        conf = self.settings
        #: receipts are routed to their member a batch at a time, with who made each sale (for returns without
        #: the card, kept the rule file's retention_days) as the lane's store
        self.receipt_lane = BatchLane(
            self.app,
            conf.kafka,
            conf.worker,
            lane_group(conf.worker.app_id, "receipts"),
            ROUTE_BATCH,
            0.0,
            aligned=True,
        )
        self.lanes.append(self.receipt_lane)
        owners = self.receipt_lane.store(
            "sale_owners",
            topics.changelog_topic(conf.worker.app_id, "sale_owners"),
            self.lanes_dir,
            conf.kafka.partitions,
        )
        self.sale_owners = SaleOwners(owners.partition)
        self.receipt_lane.step(topics.POS_TRANSACTIONS.name, self._route_receipts)
        self.receipt_lane.on_revoked(
            lambda revoked: self.sale_owners.forget_partitions({tp.partition for tp in revoked})
        )
        sink_conf = conf.worker.sink
        tag = conf.worker.group_instance_id
        self.sinks = {
            spec.name: (table, TableSink(self.warehouse, table.name, table.columns, tag)) for spec, table in SUNK_TOPICS
        }
        #: the sinks read their topics a batch at a time, in a consumer group of their own
        self.sink_lane = BatchLane(
            self.app,
            conf.kafka,
            conf.worker,
            lane_group(conf.worker.app_id, "sinks"),
            sink_conf.batch_rows,
            sink_conf.flush_seconds,
            gather_ms=round(min(SINK_GATHER_S, sink_conf.flush_seconds / 2) * 1000),
        )
        self.lanes.append(self.sink_lane)
        for spec, _ in SUNK_TOPICS:
            self.sink_lane.step(spec.name, self._sink_step(spec))
        #: the loyalty and customer agents read their member-keyed topics a batch at a time, with the cards and
        #: customer states as the lane's stores: a message per event would cost more in faust than the rules
        self.member_lane = BatchLane(
            self.app, conf.kafka, conf.worker, lane_group(conf.worker.app_id, "members"), MEMBER_BATCH, 0.0
        )
        self.lanes.append(self.member_lane)
        self.loyalty = LoyaltyAgent(self, master, self.member_lane)
        self.customers = CustomerAgents(self, master, self.member_lane)
        #: footfall and parking read their mall-keyed topics a batch at a time, with each mall's state as a store
        self.mall_lane = BatchLane(
            self.app, conf.kafka, conf.worker, lane_group(conf.worker.app_id, "malls"), MALL_BATCH, 0.0
        )
        self.lanes.append(self.mall_lane)
        self.footfall = FootfallAgents(self, master, self.mall_lane, self.route_lane, self.loyalty.rule_book)

    def topic(self, spec: topics.TopicSpec) -> faust.TopicT:
        return self.topics[spec.name]

    def timer(self, seconds: float, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self.app.timer(seconds, name=name)(run)

    def agent(self, spec: topics.TopicSpec, name: str, run: Callable[[faust.StreamT], Awaitable[None]]) -> None:
        self.app.agent(self.topic(spec), name=name)(run)

    async def audit(self, record: AuditRecord) -> None:
        """Record who did what, when and why on the ``audit`` topic (sunk to ClickHouse ``audit_log``)."""
        self.counters["audit_records"] += 1
        log.info("audit: %s %s by %s (%s): %s", record.kind, record.what, record.who, record.actor, record.outcome)
        await self.topic(topics.AUDIT).send(key=record.audit_id.encode(), value=encode(record))

    async def dead_letter(self, source: str, reason: str, payload: bytes | str) -> None:
        self.counters["dead_letters"] += 1
        log.warning("dead letter from %s: %s", source, reason)
        letter = dead_letter(source, reason, payload, self.payload_limit)
        await self.topic(topics.DEAD_LETTERS).send(key=letter.dead_letter_id.encode(), value=encode(letter))

    @contextlib.asynccontextmanager
    async def dead_letter_on_failure(self, event: EventT | ConsumerRecord, stage: str) -> AsyncIterator[None]:
        """Whatever goes wrong with one event (or a lane's record) makes it a dead letter; the stream goes on.

        An exception escaping an agent would stop it, and in a batch would lose the batch.
        """
        try:
            yield
        except InvalidEvent as exc:
            await self.dead_letter(_origin(event), str(exc), event.value)
        except Exception as exc:
            log.exception("%s failed", stage)
            await self.dead_letter(_origin(event), f"internal error in {stage}: {exc!r}", event.value)

    # -- agents -------------------------------------------------------------------------

    async def _route_receipts(self, records: Sequence[ConsumerRecord]) -> None:
        by_member = self.topic(topics.POS_BY_MEMBER)
        for record in records:
            async with self.dead_letter_on_failure(record, "routing"):
                txn = decode(PosTransaction, record.value)
                key = txn.routing_key.encode()
                partition = record.partition
                if record.key != key:
                    # a producer keyed it otherwise: put it where its sale's owner is known
                    self.counters["rekeyed"] += 1
                    await self.topic(topics.POS_TRANSACTIONS).send(key=key, value=record.value)
                    continue
                original = txn.original_txn_id
                owner = self.sale_owners.owner(original.encode(), partition) if original else None
                routed = route_receipt(txn, owner, self.malls)
                if routed.remember_owner:
                    self.sale_owners.remember(key, routed.remember_owner, txn.business_day, partition)
                    window = dt.timedelta(days=self.loyalty.rule_book().retention_days)
                    self.counters["sale_owners_forgotten"] += self.sale_owners.forget_before(
                        txn.business_day - window, partition
                    )
                await by_member.send(key=routed.key.encode(), value=encode(routed.txn))
                self.counters["receipts_routed"] += 1

    def _sink_step(self, spec: topics.TopicSpec) -> LaneStep:
        """The sink lane's step for one topic: its records become rows, stored as one insert.

        The lane commits the batch's offsets only after this returned, so after the
        insert: an offset is never committed for a row not stored.
        """
        table, sink = self.sinks[spec.name]
        # device events may name no mall: their raw rows get it from the config, as everything derived from them
        placed = spec.name in RAW_DEVICE_TOPICS

        async def store(records: Sequence[ConsumerRecord]) -> None:
            rows = []
            for record in records:
                try:
                    position = SourcePosition(record.topic, record.partition, record.offset)
                    event = decode(spec.record, record.value)
                    if placed:
                        event = self.malls.stamped(event)
                    rows += [sourced(row, position) for row in table.rows(event, self.pseudonym)]
                except InvalidEvent as exc:
                    await self.dead_letter(_origin(record), str(exc), record.value)
            await asyncio.to_thread(sink.write, rows)

        return store

    def repair_sinks(self) -> None:
        """Before consuming: let views catch up with any batch a crash cut short."""
        for _, sink in self.sinks.values():
            sink.repair()
