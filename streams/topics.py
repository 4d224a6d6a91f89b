"""Every topic of the hub in one place: name, record type, key and partition count.

Keys are chosen so that all a member's state depends on lands on the partition
that owns the member:

* ``pos.transactions`` is keyed by the *sale* a receipt belongs to (its own
  txn_id for a sale, ``original_txn_id`` for a return or void), so the router
  that remembers which member made a sale sees that sale's returns too;
  A receipt keyed otherwise is re-keyed by the router; that restores the partitioning,
  but two mis-keyed receipts sent moments apart may then swap order;
* ``pos.by_member`` and ``ledger`` are keyed by member id;
* device streams are keyed by device, so one device's readings stay in order, except
  ``parking.events``, keyed by car park so a car's entry and exit stay in order;
* ``footfall.by_mall`` and ``parking.by_mall`` are keyed by mall id: a mall's footfall
  (or parking) state depends on all its counters, badge readers, tills (or gates) at once.

Topics that feed the same stateful agent must have the same partition count;
every topic here uses the configured count, so changing it means creating new
topics (Kafka cannot shrink a topic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from .core.footfall import AreaBatch, RollupBatch
from .core.occupancy import AreaDay
from .core.parking import OccupancyBatch, ParkingStay
from .records import (
    Alert,
    AuditRecord,
    CustomerSnapshot,
    CustomerTick,
    DeadLetter,
    DeviceHealth,
    FootfallBatch,
    FootfallTick,
    LedgerEntry,
    LoyaltyRequest,
    MemberNotification,
    ParkingBatch,
    ParkingEvent,
    PosTransaction,
    PresenceInput,
    ReceptionRecord,
    RfidRead,
    VipVisit,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic: its name, what its records decode as (a record type, or a union of them) and what keys it."""

    name: str
    record: Any
    key: str


POS_TRANSACTIONS = TopicSpec(
    "pos.transactions", PosTransaction, "txn_id of the sale (original_txn_id for returns/voids)"
)
POS_BY_MEMBER = TopicSpec("pos.by_member", PosTransaction, "member_id, or store:<store_id> without a member")
RFID_READS = TopicSpec("rfid.reads", RfidRead, "epc (upper case)")
FOOTFALL_TICKS = TopicSpec("footfall.ticks", FootfallTick, "counter_id")
PARKING_EVENTS = TopicSpec("parking.events", ParkingEvent, "car_park_id (a car's entry and exit pass different gates)")
RFID_BY_MEMBER = TopicSpec(
    "rfid.by_member", PresenceInput, "member_id (reads of known members' cards, their receipts, and ticks)"
)
LEDGER = TopicSpec("ledger", LedgerEntry, "member_id")
LOYALTY_REJECTS = TopicSpec("loyalty.rejects", LedgerEntry, "member_id (refused receipts and tenders, with reasons)")
LOYALTY_REQUESTS = TopicSpec(
    "loyalty.requests",
    LoyaltyRequest,
    "member_id (till authorisations, service-desk operations, members' cars leaving car parks; "
    "schedule ticks by partition)",
)
MEMBER_NOTIFICATIONS = TopicSpec(
    "members.notifications", MemberNotification, "member_id (points changed, voucher issued or expiring, birthday)"
)
ALERTS = TopicSpec("alerts", Alert, "mall_id")
ALERTS_DELIVERED = TopicSpec("alerts.delivered", Alert, "alert_id (with the time it was published)")
VIP_VISITS = TopicSpec("vip.visits", VipVisit, "member_id")
DEAD_LETTERS = TopicSpec("deadletters", DeadLetter, "dead_letter_id")
DEVICE_HEALTH = TopicSpec("devices.health", DeviceHealth, "device_id")
RECEPTION = TopicSpec("reception", ReceptionRecord, "alert_id (staff acknowledgements of alerts, with notes)")
AUDIT = TopicSpec("audit", AuditRecord, "audit_id (manual operations, schedule runs by hand, rule-file changes)")
CUSTOMER_TICKS = TopicSpec("customers.ticks", CustomerTick, "none: sent to the partition whose members it ticks")
CUSTOMER_SIGNALS = TopicSpec("customers.signals", Alert, "member_id (churn_risk, churned, recovered)")
CUSTOMER_SNAPSHOTS = TopicSpec("customers.snapshots", CustomerSnapshot, "member_id")

FOOTFALL_BY_MALL = TopicSpec(
    "footfall.by_mall",
    FootfallBatch,
    "mall_id (batches of its ticks, staff badge reads, sales and voids, and clock marks)",
)
FOOTFALL_ROLLUPS = TopicSpec("footfall.rollups", RollupBatch, "mall_id (the rows of a closed interval, or late rows)")
FOOTFALL_AREAS = TopicSpec("footfall.areas", AreaBatch, "mall_id (the areas at the end of closed intervals)")
FOOTFALL_DAYS = TopicSpec("footfall.days", AreaDay, "mall_id")
PARKING_BY_MALL = TopicSpec("parking.by_mall", ParkingBatch, "mall_id (batches of its gate events)")
PARKING_STAYS = TopicSpec("parking.stays", ParkingStay, "mall_id")
PARKING_OCCUPANCY = TopicSpec("parking.occupancy", OccupancyBatch, "mall_id (the rows of a batch of gate events)")
FOOTFALL_OUTPUTS = (FOOTFALL_ROLLUPS, FOOTFALL_AREAS, FOOTFALL_DAYS, PARKING_STAYS, PARKING_OCCUPANCY)

ALL_TOPICS = (
    POS_TRANSACTIONS,
    POS_BY_MEMBER,
    RFID_READS,
    RFID_BY_MEMBER,
    FOOTFALL_TICKS,
    PARKING_EVENTS,
    LEDGER,
    LOYALTY_REJECTS,
    LOYALTY_REQUESTS,
    MEMBER_NOTIFICATIONS,
    ALERTS,
    ALERTS_DELIVERED,
    VIP_VISITS,
    DEAD_LETTERS,
    DEVICE_HEALTH,
    RECEPTION,
    AUDIT,
    CUSTOMER_TICKS,
    CUSTOMER_SIGNALS,
    CUSTOMER_SNAPSHOTS,
    FOOTFALL_BY_MALL,
    PARKING_BY_MALL,
    *FOOTFALL_OUTPUTS,
)

#: Where each input type enters the hub (replay and device bridges produce here).
INPUT_TOPICS: dict[str, TopicSpec] = {
    "pos_transaction": POS_TRANSACTIONS,
    "rfid_read": RFID_READS,
    "footfall_tick": FOOTFALL_TICKS,
    "parking_event": PARKING_EVENTS,
}

#: State stores, faust's tables and the lanes' stores; each has a changelog topic ``<app_id>-<table>-changelog``.
TABLES = ("sale_owners", "cards", "vip_states", "customer_states", "footfall_states", "parking_states")

#: What the members lane reads (loyalty and customer agents, with the cards and customer states), all keyed by member.
MEMBER_INPUTS = (POS_BY_MEMBER, LOYALTY_REQUESTS, CUSTOMER_SIGNALS, CUSTOMER_TICKS)
#: What the malls lane reads (footfall and parking agents, with each mall's state), keyed by mall.
MALL_INPUTS = (FOOTFALL_BY_MALL, PARKING_BY_MALL)
#: Topics the routes lane re-keys by member or mall (streams/lanes.py); the sinks lane reads
#: streams/app.py's ``SUNK_TOPICS``.
ROUTED = (RFID_READS, FOOTFALL_TICKS, PARKING_EVENTS, POS_BY_MEMBER)
#: What the VIP side reads: its presence lane (``<app_id>-presence``) members' reads, ticks and receipts, and its
#: faust agent (consumer group ``<app_id>``) the alerts to deliver; with ``worker.vip_worker.separate``
#: under the VIP worker's app id (:func:`vip_app_id`).
PRESENCE_INPUTS = (RFID_BY_MEMBER,)
VIP_AGENT_INPUTS = (ALERTS,)
VIP_ROUTED = (RFID_READS, POS_BY_MEMBER)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition a keyed record is produced to: Kafka's default partitioner, as every client here uses."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def vip_app_id(app_id: str) -> str:
    """The faust app id (and consumer group) of a separate VIP worker."""
    return f"{app_id}-vip"


def lane_group(app_id: str, lane: str) -> str:
    """The consumer group of one of the worker's batch lanes."""
    return f"{app_id}-{lane}"


class TopicLayoutError(RuntimeError):
    """Existing topics do not have the partition count the config asks for."""


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


def topic_configs(name: str, retention_ms: int | None) -> dict[str, str]:
    """What the hub creates a topic with: changelogs compacted, the others ``retention_ms`` if given."""
    if name.endswith("-changelog"):
        return {"cleanup.policy": "compact"}
    return {} if retention_ms is None else {"retention.ms": str(retention_ms)}


def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    replication_factor: int,
    app_id: str,
    security: Mapping[str, Any] | None = None,
    retention_ms: int | None = None,
) -> list[str]:
    """Create every topic (and table changelog) that does not exist yet; return the ones created.

    Brokers that auto-create topics give them one partition, which breaks
    co-partitioning, so the hub never relies on auto-creation. ``security``: kafka-python's
    SASL/TLS keywords (:func:`mallstream.transports.kafka_options`). ``retention_ms``: the
    retention of the topics that are not changelogs (external Kafka; the embedded broker has
    none and the worker trims instead); existing topics set otherwise get a warning.
    """
    names = [spec.name for spec in ALL_TOPICS] + [changelog_topic(app_id, t) for t in TABLES]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="mallstream-admin", **(security or {}))
    try:
        existing = set(admin.list_topics())
        present = [n for n in names if n in existing]
        for topic in admin.describe_topics(present) if present else ():
            count = len(topic["partitions"])
            if count != partitions:
                raise TopicLayoutError(
                    f"topic {topic['name']!r} has {count} partitions but kafka.partitions is {partitions}: "
                    "co-partitioned agents would miss state; create new topics or set kafka.partitions to match"
                )
        if retention_ms is not None and present:
            _warn_of_other_configs(admin, present, retention_ms)
        missing = [n for n in names if n not in existing]
        created = []
        for name in missing:
            try:
                admin.create_topics(
                    [NewTopic(name, partitions, replication_factor, topic_configs=topic_configs(name, retention_ms))]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def _warn_of_other_configs(admin: KafkaAdminClient, names: list[str], retention_ms: int) -> None:
    """One warning line naming the existing topics whose retention or cleanup is not what the hub would create."""
    wanted = {name: topic_configs(name, retention_ms) for name in names}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, configs=dict.fromkeys(wanted[name])) for name in names]
    actual = admin.describe_configs(resources, config_filter="ALL").get("topic", {})
    found = {(name, key): actual.get(name, {}).get(key, {}).get("value") for name in names for key in wanted[name]}
    # a changelog the retention keeper made deletable too (compact,delete without retention) is as wanted
    differ = [
        f"{name} {key}={found[name, key]} (wanted {value})"
        for name in names
        for key, value in wanted[name].items()
        if found[name, key] != value and not (key == "cleanup.policy" and "compact" in (found[name, key] or ""))
    ]
    if differ:
        log.warning(
            "existing topics are set otherwise than kafka.topic_retention_hours and compacted changelogs "
            "ask (the hub changes no existing topic): %s",
            "; ".join(differ),
        )


def _pos_key(event: dict) -> str | None:
    return event.get("original_txn_id") or event.get("txn_id")


#: How to key a raw input event (a decoded JSON object) on its input topic.
INPUT_KEYS: dict[str, Callable[[dict], str | None]] = {
    "pos_transaction": _pos_key,
    # by tag: one tag's reads stay in order whichever readers saw it, so presence never sees them swapped
    "rfid_read": lambda event: (event.get("epc") or "").upper() or None,
    "footfall_tick": lambda event: event.get("counter_id"),
    # by car park: a car enters and leaves by different gates, and its exit must not overtake its entry
    "parking_event": lambda event: event.get("car_park_id"),
}
