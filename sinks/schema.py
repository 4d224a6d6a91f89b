"""ClickHouse tables and materialized views, as ordered migrations.

Each sunk table carries where its rows came from (``_topic``, ``_partition``,
``_offset``) and the insert batch that wrote them (``_batch``), which is also the
insert-deduplication token: re-running a batch after a crash mid-insert fills in
a view that missed it, and changes nothing that already has it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mallstream.privacy import mask_card_numbers, mask_phone_numbers
from mallstream.settings import Settings
from mallstream.streams.core.footfall import AreaBatch, RollupBatch, RollupRow
from mallstream.streams.core.occupancy import AreaDay, AreaRow
from mallstream.streams.core.parking import OccupancyBatch, ParkingOccupancy, ParkingStay
from mallstream.streams.records import (
    Alert,
    AuditRecord,
    CustomerSnapshot,
    DeadLetter,
    DeviceHealth,
    FootfallTick,
    LedgerEntry,
    ParkingEvent,
    PosTransaction,
    ReceptionRecord,
    RfidRead,
    VipVisit,
    encode,
    identity,
)


def _alone(record: Any) -> tuple[Any]:
    return (record,)


@dataclass(frozen=True)
class SinkTable:
    """A table fed by a sink: its name, its columns (the first is the row's key), and the record mapping.

    ``unpack`` gives the records one message carries, for topics whose messages are batches of rows.
    ``pseudonymised`` columns get the row's identifier (an EPC, a plate) and store its keyed hash
    (:class:`mallstream.privacy.Pseudonym`): personal identifiers never reach ClickHouse as they are.
    """

    name: str
    columns: Sequence[str]
    row: Callable[[Any], tuple]
    unpack: Callable[[Any], Sequence[Any]] = _alone
    pseudonymised: tuple[str, ...] = ()
    #: for identifiers inside other values: (row, pseudonym) -> the row as stored
    pseudonymise: Callable[[tuple, Callable[[str], str]], tuple] | None = None

    def rows(self, message: Any, pseudonym: Callable[[str], str] | None = None) -> list[tuple]:
        """The table rows of one message, pseudonymised columns hashed with ``pseudonym``."""
        rows = [self.row(record) for record in self.unpack(message)]
        if not self.pseudonymised and self.pseudonymise is None:
            return rows
        if pseudonym is None:
            raise ValueError(f"{self.name} stores personal identifiers: a pseudonym is needed")
        hashed = [self.columns.index(column) for column in self.pseudonymised]
        rows = [tuple(pseudonym(value) if index in hashed else value for index, value in enumerate(row))
                for row in rows]
        return [self.pseudonymise(row, pseudonym) for row in rows] if self.pseudonymise else rows


def _ledger_row(entry: LedgerEntry) -> tuple:
    return (
        entry.entry_id, entry.mall_id, entry.member_id, entry.account, entry.delta, entry.balance_after,
        entry.cause, entry.txn_id, entry.store_id, entry.ts, entry.business_day, entry.rule_id, entry.rule_version,
        entry.amount, entry.voucher_id, entry.reason, entry.by,
    )


def _dead_letter_row(letter: DeadLetter) -> tuple:
    # a refused receipt may carry a bank card number in a tender's reference
    return (letter.dead_letter_id, letter.source, letter.reason, mask_card_numbers(letter.payload), letter.ts)


def _rfid_row(read: RfidRead) -> tuple:
    return (identity(read), read.mall_id or "", read.reader_id, read.antenna, read.epc, read.rssi_dbm, read.ts,
            read.clock_skew_s, read.duplicate)


def _footfall_row(tick: FootfallTick) -> tuple:
    return (identity(tick), tick.mall_id or "", tick.counter_id, tick.ts, tick.interval_s, tick.count_in,
            tick.count_out, tick.clock_skew_s)


def _parking_row(event: ParkingEvent) -> tuple:
    return (identity(event), event.mall_id or "", event.car_park_id, event.gate_id, event.plate, event.direction,
            event.ts, event.clock_skew_s)


def _visit_row(visit: VipVisit) -> tuple:
    # an amended visit (late spend) is a new row of the same visit, with one more receipt
    return (f"{visit.visit_id}:{len(visit.txn_ids)}:{visit.spend_cents}", visit.visit_id, visit.mall_id,
            visit.member_id, visit.tier, visit.visit_number, visit.arrived, visit.left,
            [stop.place for stop in visit.path], [stop.arrived for stop in visit.path],
            [stop.dwell_s for stop in visit.path], visit.zone_dwell_s, visit.reads, visit.spend_cents,
            visit.txn_ids, len(visit.txn_ids))


def _alert_row(alert: Alert) -> tuple:
    # a tier that allows names gets them on screens and pagers; the table names the member by id
    message = alert.message.replace(alert.name, alert.member_id or "member") if alert.name else alert.message
    return (alert.alert_id, alert.mall_id, alert.kind, alert.severity, alert.ts, alert.decided_at,
            alert.published_at, alert.member_id, alert.tier, alert.zone_id, alert.visit_id, message)


def _reception_row(record: ReceptionRecord) -> tuple:
    # a note may hold the number a member asked to be called back on
    return (record.reception_id, record.alert_id, record.mall_id, record.zone_id or "", record.alert_kind,
            record.member_id, record.tier, record.alert_ts, record.staff_id, record.acked_at, record.business_day,
            record.channel, record.note_kind or "", mask_phone_numbers(record.note))


def _health_row(health: DeviceHealth) -> tuple:
    return (f"{health.device_id}@{health.ts.isoformat()}", health.device_id, health.ts, health.last_seen,
            health.frames, health.events, health.rejects, health.duplicates, health.errors, health.refused,
            health.last_error)


#: The cause of a member's parking entries: ``parking:<stay id>``, and a stay id names the car's plate.
PARKING_CAUSE = "parking:"
_LEDGER_TXN = 7


def _parking_stays_hashed(row: tuple, pseudonym: Callable[[str], str]) -> tuple:
    """A member's parking entries with their stay's keyed hash where the stay id (and its plate) stood.

    ``parking:<hash>``: the hash is the stay's row id in parking_stays, so parking_charges still joins them.
    """
    entry_id, txn_id = row[0], row[_LEDGER_TXN]
    if not txn_id.startswith(PARKING_CAUSE):
        return row
    stay = PARKING_CAUSE + pseudonym(txn_id.removeprefix(PARKING_CAUSE))
    # an entry id is its cause and more, unless it was long and cut (then it is hashed whole)
    entry_id = stay + entry_id[len(txn_id):] if entry_id.startswith(txn_id) else PARKING_CAUSE + pseudonym(entry_id)
    return (entry_id, *row[1:_LEDGER_TXN], stay, *row[_LEDGER_TXN + 1:])


LEDGER_TABLE = SinkTable(
    "ledger_entries",
    ("entry_id", "mall_id", "member_id", "account", "delta", "balance_after",
     "cause", "txn_id", "store_id", "ts", "business_day", "rule_id", "rule_version", "amount", "voucher_id", "reason",
     "by"),
    _ledger_row,
    pseudonymise=_parking_stays_hashed,
)
DEAD_LETTERS_TABLE = SinkTable(
    "dead_letters", ("dead_letter_id", "source", "reason", "payload", "ts"), _dead_letter_row
)

RFID_READS_TABLE = SinkTable(
    "rfid_reads",
    ("event_id", "mall_id", "reader_id", "antenna", "tag_hash", "rssi_dbm", "ts", "clock_skew_s", "duplicate"),
    _rfid_row,
    # a member's card is a tag: its EPC is a card number; an event without an id of its own is known by a hash
    # of its content, which would give a sequential card number away to anyone trying them all
    pseudonymised=("event_id", "tag_hash"),
)
FOOTFALL_TICKS_TABLE = SinkTable(
    "footfall_ticks",
    ("event_id", "mall_id", "counter_id", "ts", "interval_s", "count_in", "count_out", "clock_skew_s"),
    _footfall_row,
)
PARKING_EVENTS_TABLE = SinkTable(
    "parking_events",
    ("event_id", "mall_id", "car_park_id", "gate_id", "plate_hash", "direction", "ts", "clock_skew_s"),
    _parking_row,
    pseudonymised=("event_id", "plate_hash"),  # the same goes for plates, and a city's plates are few
)
DEVICE_HEALTH_TABLE = SinkTable(
    "device_health",
    ("report_id", "device_id", "ts", "last_seen", "frames", "events", "rejects", "duplicates", "errors", "refused",
     "last_error"),
    _health_row,
)

def place_rows(settings: Settings, version: int) -> list[tuple]:
    """Every device of the config with the place it watches, for the ``places`` table."""
    rows = []
    for mall in settings.malls:
        places = {place.id: ("entrance", place) for place in mall.entrances}
        places |= {place.id: ("zone", place) for place in mall.zones}
        places |= {place.id: ("floor", place) for place in mall.floors}
        places |= {store.id: ("store", store) for store in mall.stores}
        places |= {park.id: ("car_park", None) for park in mall.car_parks}
        devices = [("rfid_reader", d) for d in mall.rfid_readers] + [("people_counter", d) for d in mall.people_counters]
        devices += [("parking_gate", gate) for park in mall.car_parks for gate in park.gates]
        for kind, device in devices:
            place_kind, place = places.get(device.place, ("unknown", None))
            floor = device.place if place_kind == "floor" else getattr(place, "floor", "")
            area = getattr(place, "area_m2", None)
            rows.append((mall.id, device.id, kind, device.place, place_kind, floor,
                         None if area is None else float(area), device.excludes_staff, version))
    return rows


PLACES_COLUMNS = ("mall_id", "device_id", "device_kind", "place_id", "place_kind", "floor", "area_m2",
                  "excludes_staff", "version")

VIP_VISITS_TABLE = SinkTable(
    "vip_visits",
    ("row_id", "visit_id", "mall_id", "member_id", "tier", "visit_number", "arrived", "left", "path_places",
     "path_arrived", "path_dwell_s", "zone_dwell_s", "reads", "spend_cents", "txn_ids", "version"),
    _visit_row,
)
ALERTS_TABLE = SinkTable(
    "alerts",
    ("alert_id", "mall_id", "kind", "severity", "ts", "decided_at", "published_at", "member_id", "tier", "zone_id",
     "visit_id", "message"),
    _alert_row,
)

RECEPTION_TABLE = SinkTable(
    "reception_records",
    ("reception_id", "alert_id", "mall_id", "zone_id", "alert_kind", "member_id", "tier", "alert_ts", "staff_id",
     "acked_at", "business_day", "channel", "note_kind", "note"),
    _reception_row,
)


def _audit_row(record: AuditRecord) -> tuple:
    return (record.audit_id, record.kind, record.ts, record.who, record.actor, record.what,
            mask_phone_numbers(record.why), record.outcome, record.mall_id, record.member_id, record.subject,
            record.detail)


AUDIT_TABLE = SinkTable(
    "audit_log",
    ("audit_id", "kind", "ts", "who", "actor", "what", "why", "outcome", "mall_id", "member_id", "subject", "detail"),
    _audit_row,
)
SIGNED_KINDS = {"sale": 1, "return": -1, "void": -1}


def _receipt_row(txn: PosTransaction) -> tuple:
    sign = SIGNED_KINDS[txn.kind]
    return (txn.txn_id, txn.mall_id or "", txn.member_id, txn.store_id, txn.kind, txn.ts, txn.business_day,
            sign * int(txn.total * 100), [line.category for line in txn.lines], [line.brand for line in txn.lines],
            [sign * int(line.amount * 100) for line in txn.lines])


def _snapshot_row(snapshot: CustomerSnapshot) -> tuple:
    # keyed by content: every new snapshot of a member is a row (the latest as_of wins), a redelivered one is not
    snapshot_id = hashlib.blake2b(encode(snapshot), digest_size=16).hexdigest()
    return (snapshot_id, *(getattr(snapshot, name) for name in CustomerSnapshot.__struct_fields__))


RECEIPTS_BY_MEMBER_TABLE = SinkTable(
    "receipts_by_member",
    ("txn_id", "mall_id", "member_id", "store_id", "kind", "ts", "business_day", "total_cents", "line_categories",
     "line_brands", "line_amount_cents"),
    _receipt_row,
)
CUSTOMER_SNAPSHOTS_TABLE = SinkTable(
    "customer_snapshots",
    ("snapshot_id", *CustomerSnapshot.__struct_fields__),
    _snapshot_row,
)
def _area_id(mall_id: str, level: str, key: str, moment: dt.datetime) -> str:
    """Rows of one area and moment have one id however often they are emitted (a redelivery, a restart)."""
    return f"{mall_id}:{level}:{key}:{int(moment.timestamp())}"


def _rollup_row(row: RollupRow) -> tuple:
    # a late row is one event's addition to its interval: that event names it
    row_id = _area_id(row.mall_id, row.level, row.key, row.start) + (f":late:{row.cause}" if row.late else "")
    return (row_id, row.mall_id, row.level, row.key, row.start, row.start.date(), row.interval_s, row.visitors_in,
            row.visitors_out, row.staff_in, row.staff_out, row.transactions, row.passers_by, row.late)


def _area_row(row: AreaRow) -> tuple:
    return (_area_id(row.mall_id, row.level, row.key, row.start), row.mall_id, row.level, row.key, row.start,
            row.interval_s, row.occupancy, row.occupancy_uncorrected, row.density, row.departures, row.dwell_s)


def _area_day_row(day: AreaDay) -> tuple:
    # the business day it closes: a mall emptying at 01:00 closes the day before
    return (_area_id(day.mall_id, day.level, day.key, day.closed_at), day.mall_id, day.level, day.key,
            day.closed_at, (day.closed_at - dt.timedelta(hours=12)).date(), day.visitors_in,
            day.visitors_out_counted, day.residual, day.exit_scale_used, day.exit_scale_next, day.dwell_littles_s,
            day.dwell_matched_s)


def _stay_row(stay: ParkingStay) -> tuple:
    return (stay.stay_id, stay.mall_id, stay.car_park_id, stay.plate, stay.entry, stay.exit, stay.exit_gate,
            stay.duration_s, stay.fee, stay.member_id)


def _batch_rows(batch: RollupBatch | AreaBatch | OccupancyBatch) -> list:
    return batch.rows


def _parking_occupancy_row(row: ParkingOccupancy) -> tuple:
    return (row.cause, row.mall_id, row.car_park_id, row.ts, row.occupancy, row.capacity)


FOOTFALL_ROLLUPS_TABLE = SinkTable(
    "footfall_rollups",
    ("row_id", "mall_id", "level", "key", "start", "local_day", "interval_s", "visitors_in", "visitors_out",
     "staff_in", "staff_out", "transactions", "passers_by", "late"),
    _rollup_row,
    _batch_rows,
)
AREA_OCCUPANCY_TABLE = SinkTable(
    "area_occupancy",
    ("row_id", "mall_id", "level", "key", "start", "interval_s", "occupancy", "occupancy_uncorrected", "density",
     "departures", "dwell_s"),
    _area_row,
    _batch_rows,
)
AREA_DAYS_TABLE = SinkTable(
    "area_days",
    ("row_id", "mall_id", "level", "key", "closed_at", "local_day", "visitors_in", "visitors_out_counted",
     "residual", "exit_scale_used", "exit_scale_next", "dwell_littles_s", "dwell_matched_s"),
    _area_day_row,
)
PARKING_STAYS_TABLE = SinkTable(
    "parking_stays",
    ("row_id", "mall_id", "car_park_id", "plate_hash", "entry", "exit", "exit_gate", "duration_s", "fee", "member_id"),
    _stay_row,
    pseudonymised=("row_id", "plate_hash"),  # the row id names the plate
)
PARKING_OCCUPANCY_TABLE = SinkTable(
    "parking_occupancy", ("event_id", "mall_id", "car_park_id", "ts", "occupancy", "capacity"),
    _parking_occupancy_row,
    _batch_rows,
)

#: Kept on every table that takes sink inserts or view inserts, so a repeated
#: batch token is recognised (ClickHouse keeps that many recent block hashes).
DEDUP = "SETTINGS non_replicated_deduplication_window = 1000"

SINK_COLUMNS = """
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64,
    _batch String,
    _sunk_at DateTime64(3, 'UTC')"""

#: Visitor roll-ups: (grain, time column, its type, retention). Minute rows go after 90 days; hours and days stay.
_VISITOR_GRAINS = (
    ("minute", "minute", "DateTime('UTC')", "TTL minute + INTERVAL 90 DAY"),
    ("hourly", "hour", "DateTime('UTC')", ""),
    ("daily", "day", "Date", ""),
)

#: A keyed hash as :class:`mallstream.privacy.Pseudonym` writes it; a mutation waits until it is done.
_HASHED = "^[0-9a-f]{32}$"
_AT_ONCE = "SETTINGS mutations_sync = 2"


def _parking_charges(plate: str) -> str:
    """The parking_charges view over parking_stays, whose plate column is ``plate`` (``plate_hash`` since 11)."""
    return """CREATE VIEW IF NOT EXISTS {{db}}.parking_charges AS
               SELECT s.row_id AS stay_id, s.mall_id AS mall_id, s.car_park_id AS car_park_id, s.{plate} AS {plate},
                      s.member_id AS member_id, s.entry AS entry, s.exit AS exit, s.exit_gate AS exit_gate,
                      s.duration_s AS duration_s,
                      multiIf(s.member_id = '', toInt64(s.fee * 100), ifNull(c.stay_id, '') = '', NULL,
                              c.fee_cents) AS fee_cents,
                      ifNull(c.waived_cents, 0) AS waived_cents,
                      fee_cents - waived_cents AS charged_cents,
                      ifNull(c.free_reason, '') AS free_reason,
                      multiIf(ifNull(charged_cents, 0) = 0, '', c.points_spent > 0, 'points',
                              c.stored_value_cents > 0, 'stored_value', 'cash') AS paid_with,
                      ifNull(c.points_spent, 0) AS points_spent,
                      ifNull(c.stored_value_cents, 0) AS stored_value_cents,
                      ifNull(c.note, '') AS note,
                      ifNull(c.rule_version, '') AS rule_version
               FROM {{db}}.parking_stays AS s
               LEFT JOIN (
                   SELECT substring(txn_id, 9) AS stay_id,
                          sumIf(amount, cause = 'parking_fee') AS fee_cents,
                          sumIf(amount, cause = 'parking_discount') AS waived_cents,
                          anyIf(reason, cause = 'parking_discount') AS free_reason,
                          -sumIf(delta, cause = 'points_spent') AS points_spent,
                          -sumIf(delta, cause = 'stored_value_debit') AS stored_value_cents,
                          anyIf(reason, cause IN ('parking_fee', 'rejected') AND reason != '') AS note,
                          any(rule_version) AS rule_version
                   FROM {{db}}.ledger_entries WHERE startsWith(entry_id, 'parking:')
                   GROUP BY stay_id) AS c ON c.stay_id = s.row_id""".format(plate=plate)


@dataclass(frozen=True)
class Retention:
    """How long a table with a TTL keeps its rows, and the coarser tables its figures live on in.

    A TTL may only delete rows whose figures a coarser roll-up still carries: ``carried_by`` names
    roll-ups kept for ever (each fed by a materialized view from the table or from the table's own
    source), or ``why`` says why the rows are not needed past the TTL. Reports read a table only for
    ranges that start within its TTL, counted from now (mallstream/reports.py); tests check every TTL
    of the schema is listed here.
    """

    days: int
    carried_by: tuple[str, ...] = ()
    why: str = ""


RETENTION: dict[str, Retention] = {
    "footfall_minute": Retention(90, ("footfall_hourly",)),
    "footfall_rollups": Retention(90, ("visitors_hourly", "visitors_daily")),
    "visitors_minute": Retention(90, ("visitors_hourly", "visitors_daily")),
    "area_occupancy": Retention(90, ("area_occupancy_hourly",)),
    "parking_occupancy": Retention(90, ("parking_hourly",)),
    "device_health": Retention(90, why="a device's recent health for the devices board and its alarms: the "
                                       "events it counted are in the event tables (kept), and a device's "
                                       "health a season ago tells nothing about it now"),
}

#: Parking occupancy by hour, from two sources: each gate event the parking agent counted is a row of
#: parking_occupancy, and each exit among them is also a stay, so entries are the rows less the stays.
#: The occupancy at the hour's end is the last row's by time, then id: rows may come in any order and batches.
_PARKING_HOURLY: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "parking_occupancy": ("ts", (("capacity", "max(capacity)"),
                                 ("occupancy_end", "argMaxState(occupancy, (ts, event_id))"),
                                 ("occupancy_peak", "max(occupancy)"),
                                 ("entries", "toInt64(count())"))),
    "parking_stays": ("exit", (("entries", "-toInt64(count())"), ("exits", "toInt64(count())"))),
}
#: Back-filled hours start after the first hour the TTL may have begun deleting, so each hour is whole.
_WHOLE_HOURS_KEPT = "toStartOfHour(now() - INTERVAL 90 DAY) + INTERVAL 1 HOUR"


def _parking_hourly_select(source: str, where: str = "") -> str:
    moment, figures = _PARKING_HOURLY[source]
    columns = ", ".join(f"{expression} AS {column}" for column, expression in figures)
    return f"""SELECT mall_id, car_park_id, toStartOfHour({moment}) AS hour, {columns}
               FROM {{db}}.{source} {where} GROUP BY mall_id, car_park_id, hour"""


def _parking_hourly_backfill(source: str) -> str:
    """Fills parking_hourly from the source's rows a TTL has left whole; the views take it from there."""
    moment, figures = _PARKING_HOURLY[source]
    columns = ", ".join(column for column, _ in figures)
    return (f"INSERT INTO {{db}}.parking_hourly (mall_id, car_park_id, hour, {columns}) "
            + _parking_hourly_select(source, f"WHERE {moment} >= {_WHOLE_HOURS_KEPT}"))


#: (version, description, statements). ``{db}`` is the configured database. Append only.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "member ledger, daily points roll-up, dead letters",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.ledger_entries (
                entry_id String,
                mall_id LowCardinality(String),
                member_id String,
                account LowCardinality(String),
                delta Int64,
                balance_after Int64,
                cause LowCardinality(String),
                txn_id String,
                store_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                business_day Date,{SINK_COLUMNS}
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(business_day) ORDER BY entry_id {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.points_daily (
                mall_id LowCardinality(String),
                business_day Date,
                store_id LowCardinality(String),
                account LowCardinality(String),
                earned Int64,
                reversed Int64,
                entries UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, business_day, store_id, account) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.points_daily_mv TO {db}.points_daily AS
               SELECT mall_id, business_day, store_id, account,
                      sumIf(delta, delta > 0) AS earned, sumIf(-delta, delta < 0) AS reversed, count() AS entries
               FROM {db}.ledger_entries GROUP BY mall_id, business_day, store_id, account""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.dead_letters (
                dead_letter_id String,
                source String,
                reason String,
                payload String,
                ts DateTime64(3, 'UTC'),{SINK_COLUMNS}
            ) ENGINE = MergeTree ORDER BY dead_letter_id {DEDUP}""",
        ],
    ),
    (
        2,
        "raw device events (RFID reads, footfall ticks, parking gate events) and device health",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.rfid_reads (
                event_id String,
                mall_id LowCardinality(String),
                reader_id LowCardinality(String),
                antenna UInt8,
                epc String,
                rssi_dbm Float32,
                ts DateTime64(3, 'UTC'),
                clock_skew_s Nullable(Float32),
                duplicate Bool,{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, reader_id, ts) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_ticks (
                event_id String,
                mall_id LowCardinality(String),
                counter_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                interval_s UInt32,
                count_in UInt32,
                count_out UInt32,
                clock_skew_s Nullable(Float32),{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, counter_id, ts) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_events (
                event_id String,
                mall_id LowCardinality(String),
                car_park_id LowCardinality(String),
                gate_id LowCardinality(String),
                plate String,
                direction Enum8('entry' = 1, 'exit' = 2),
                ts DateTime64(3, 'UTC'),
                clock_skew_s Nullable(Float32),{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, car_park_id, ts) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.device_health (
                report_id String,
                device_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                last_seen Nullable(String),
                frames UInt64,
                events UInt64,
                rejects UInt64,
                duplicates UInt64,
                errors UInt64,
                refused UInt64,
                last_error Nullable(String),{SINK_COLUMNS}
            ) ENGINE = MergeTree ORDER BY (device_id, ts) TTL toDateTime(ts) + INTERVAL 90 DAY {DEDUP}""",
        ],
    ),
    (
        3,
        "places of the devices; footfall per counter by minute (kept 90 days) and by hour (kept)",
        [
            # Written from the config at every worker start; the latest version of a device wins.
            """CREATE TABLE IF NOT EXISTS {db}.places (
                mall_id LowCardinality(String),
                device_id String,
                device_kind LowCardinality(String),
                place_id String,
                place_kind LowCardinality(String),
                floor LowCardinality(String),
                area_m2 Nullable(Float64),
                excludes_staff Bool,
                version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (mall_id, device_id)""",
            # A tick counts the interval that ends at ts: it is filed under the minute that interval starts.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_minute (
                mall_id LowCardinality(String),
                counter_id LowCardinality(String),
                minute DateTime('UTC'),
                count_in UInt64,
                count_out UInt64,
                ticks UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, counter_id, minute)
              TTL minute + INTERVAL 90 DAY {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.footfall_minute_mv TO {db}.footfall_minute AS
               SELECT mall_id, counter_id, toStartOfMinute(ts - toIntervalSecond(interval_s)) AS minute,
                      sum(count_in) AS count_in, sum(count_out) AS count_out, count() AS ticks
               FROM {db}.footfall_ticks GROUP BY mall_id, counter_id, minute""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_hourly (
                mall_id LowCardinality(String),
                counter_id LowCardinality(String),
                hour DateTime('UTC'),
                count_in UInt64,
                count_out UInt64,
                ticks UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, counter_id, hour) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.footfall_hourly_mv TO {db}.footfall_hourly AS
               SELECT mall_id, counter_id, toStartOfHour(ts - toIntervalSecond(interval_s)) AS hour,
                      sum(count_in) AS count_in, sum(count_out) AS count_out, count() AS ticks
               FROM {db}.footfall_ticks GROUP BY mall_id, counter_id, hour""",
        ],
    ),
    (
        4,
        "VIP visits (latest amendment wins) and delivered alerts with their latency",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.vip_visits (
                row_id String,
                visit_id String,
                mall_id LowCardinality(String),
                member_id String,
                tier LowCardinality(String),
                visit_number UInt32,
                arrived DateTime64(3, 'UTC'),
                left DateTime64(3, 'UTC'),
                path_places Array(String),
                path_arrived Array(DateTime64(3, 'UTC')),
                path_dwell_s Array(Float64),
                zone_dwell_s Map(String, Float64),
                reads UInt32,
                spend_cents Int64,
                txn_ids Array(String),
                version UInt32,{SINK_COLUMNS}
            ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(arrived) ORDER BY (mall_id, visit_id)
              {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.alerts (
                alert_id String,
                mall_id LowCardinality(String),
                kind LowCardinality(String),
                severity LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                decided_at Nullable(DateTime64(3, 'UTC')),
                published_at Nullable(DateTime64(3, 'UTC')),
                member_id Nullable(String),
                tier LowCardinality(Nullable(String)),
                zone_id Nullable(String),
                visit_id Nullable(String),
                message String,{SINK_COLUMNS}
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, ts, alert_id) {DEDUP}""",
        ],
    ),
    (
        5,
        "visitors (staff deducted) per level by minute (kept 90 days), hour and day; occupancy, dwell and "
        "drift per area; parking stays and occupancy",
        [
            # Rows of the footfall agent; a late row adds to its interval, so everything downstream sums.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_rollups (
                row_id String,
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                start DateTime('UTC'),
                local_day Date,
                interval_s UInt32,
                visitors_in Int64,
                visitors_out Int64,
                staff_in Int64,
                staff_out Int64,
                transactions Int64,
                passers_by Int64,
                late Bool,{SINK_COLUMNS},
                INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(start) ORDER BY (mall_id, level, key, start)
              TTL start + INTERVAL 90 DAY {DEDUP}""",
            *(f"""CREATE TABLE IF NOT EXISTS {{db}}.visitors_{grain} (
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                {moment} {moment_type},
                visitors_in Int64,
                visitors_out Int64,
                staff_in Int64,
                staff_out Int64,
                transactions Int64,
                passers_by Int64,
                late_rows UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, level, key, {moment}) {ttl} {DEDUP}"""
              for grain, moment, moment_type, ttl in _VISITOR_GRAINS),
            *(f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.visitors_{grain}_mv TO {{db}}.visitors_{grain} AS
               SELECT mall_id, level, key, {expression} AS {moment},
                      sum(visitors_in) AS visitors_in, sum(visitors_out) AS visitors_out, sum(staff_in) AS staff_in,
                      sum(staff_out) AS staff_out, sum(transactions) AS transactions,
                      sum(passers_by) AS passers_by, countIf(late) AS late_rows
               FROM {{db}}.footfall_rollups GROUP BY mall_id, level, key, {moment}"""
              for (grain, moment, _, _), expression in zip(_VISITOR_GRAINS,
                                                           ("start", "toStartOfHour(start)", "local_day"))),
            f"""CREATE TABLE IF NOT EXISTS {{db}}.area_occupancy (
                row_id String,
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                start DateTime('UTC'),
                interval_s UInt32,
                occupancy Int64,
                occupancy_uncorrected Int64,
                density Nullable(Float64),
                departures Float64,
                dwell_s Nullable(Float64),{SINK_COLUMNS},
                INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(start) ORDER BY (mall_id, level, key, start)
              TTL start + INTERVAL 90 DAY {DEDUP}""",
            # Occupancy and dwell by hour outlive the minute rows: mean = occupancy_sum / samples.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.area_occupancy_hourly (
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                hour DateTime('UTC'),
                occupancy_sum Int64,
                samples UInt64,
                occupancy_peak SimpleAggregateFunction(max, Int64),
                departures Float64,
                dwell_seconds Float64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, level, key, hour) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.area_occupancy_hourly_mv TO {db}.area_occupancy_hourly AS
               SELECT mall_id, level, key, toStartOfHour(start) AS hour, sum(occupancy) AS occupancy_sum,
                      count() AS samples, max(occupancy) AS occupancy_peak, sum(departed) AS departures,
                      sum(departed * ifNull(dwell_s, 0)) AS dwell_seconds
               FROM (SELECT *, departures AS departed FROM {db}.area_occupancy)
               GROUP BY mall_id, level, key, hour""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.area_days (
                row_id String,
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                closed_at DateTime('UTC'),
                local_day Date,
                visitors_in Int64,
                visitors_out_counted Int64,
                residual Float64,
                exit_scale_used Float64,
                exit_scale_next Float64,
                dwell_littles_s Nullable(Float64),
                dwell_matched_s Nullable(Float64),{SINK_COLUMNS}
            ) ENGINE = MergeTree ORDER BY (mall_id, level, key, closed_at) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_stays (
                row_id String,
                mall_id LowCardinality(String),
                car_park_id LowCardinality(String),
                plate String,
                entry Nullable(DateTime64(3, 'UTC')),
                exit DateTime64(3, 'UTC'),
                exit_gate LowCardinality(String),
                duration_s Nullable(Float64),
                fee Nullable(Decimal(12, 2)),{SINK_COLUMNS},
                INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(exit) ORDER BY (mall_id, car_park_id, exit) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_occupancy (
                event_id String,
                mall_id LowCardinality(String),
                car_park_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                occupancy UInt32,
                capacity UInt32,{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, car_park_id, ts)
              TTL toDateTime(ts) + INTERVAL 90 DAY {DEDUP}""",
        ],
    ),
    (
        6,
        "customer intelligence: member snapshots, receipts by member, dashboard views by value class",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.customer_snapshots (
                snapshot_id String,
                member_id String,
                mall_id LowCardinality(String),
                as_of DateTime64(3, 'UTC'),
                first_purchase Nullable(Date),
                last_purchase Nullable(Date),
                repeat_days UInt32,
                receipts UInt32,
                spend_cents Int64,
                p_alive Nullable(Float64),
                lifecycle_stage LowCardinality(Nullable(String)),
                rfm_segment LowCardinality(Nullable(String)),
                value_class LowCardinality(String),
                alert LowCardinality(String),
                top_brands Array(String),
                top_categories Array(String),
                price_band_cents Array(Int64),
                weekday_visits Array(UInt32),
                hour_visits Array(UInt32),
                tier LowCardinality(String),
                age_band LowCardinality(String),
                gender LowCardinality(String),
                region LowCardinality(String),
                occupation LowCardinality(String),
                education LowCardinality(String),{SINK_COLUMNS}
            ) ENGINE = ReplacingMergeTree(as_of) ORDER BY member_id {DEDUP}""",
            # every receipt once, returns and voids negative; line arrays are parallel
            f"""CREATE TABLE IF NOT EXISTS {{db}}.receipts_by_member (
                txn_id String,
                mall_id LowCardinality(String),
                member_id Nullable(String),
                store_id LowCardinality(String),
                kind LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                business_day Date,
                total_cents Int64,
                line_categories Array(String),
                line_brands Array(String),
                line_amount_cents Array(Int64),{SINK_COLUMNS}
            ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(business_day) ORDER BY txn_id {DEDUP}""",
            # the views read the latest snapshot of every member, so a class or stage is always the current one
            """CREATE VIEW IF NOT EXISTS {db}.customer_pyramid AS
               SELECT value_class, count() AS members, sum(spend_cents) AS spend_cents,
                      members / sum(members) OVER () AS member_share, spend_cents / sum(spend_cents) OVER () AS spend_share
               FROM {db}.customer_snapshots FINAL GROUP BY value_class""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_lifecycle AS
               SELECT ifNull(lifecycle_stage, 'no purchase') AS stage, count() AS members, sum(spend_cents) AS spend_cents
               FROM {db}.customer_snapshots FINAL GROUP BY stage""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_class_lines AS
               SELECT s.value_class AS value_class, r.member_id AS member_id, r.business_day AS business_day,
                      category, brand, amount_cents
               FROM (SELECT * FROM {db}.receipts_by_member FINAL WHERE member_id IS NOT NULL) AS r
               ARRAY JOIN r.line_categories AS category, r.line_brands AS brand, r.line_amount_cents AS amount_cents
               INNER JOIN (SELECT member_id, value_class FROM {db}.customer_snapshots FINAL) AS s
                   ON s.member_id = assumeNotNull(r.member_id)""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_class_categories AS
               SELECT value_class, category, sum(amount_cents) AS spend_cents, uniqExact(member_id) AS members
               FROM {db}.customer_class_lines GROUP BY value_class, category""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_class_brands AS
               SELECT value_class, brand, sum(amount_cents) AS spend_cents, uniqExact(member_id) AS members
               FROM {db}.customer_class_lines GROUP BY value_class, brand""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_class_times AS
               SELECT value_class, sumForEach(weekday_visits) AS weekday_visits, sumForEach(hour_visits) AS hour_visits
               FROM {db}.customer_snapshots FINAL GROUP BY value_class""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_class_price_bands AS
               SELECT value_class, sumForEach(price_band_cents) AS price_band_cents
               FROM {db}.customer_snapshots FINAL GROUP BY value_class""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_brand_favourites AS
               SELECT brand, count() AS members, sum(spend_cents) AS spend_cents
               FROM {db}.customer_snapshots FINAL ARRAY JOIN top_brands AS brand GROUP BY brand""",
            """CREATE VIEW IF NOT EXISTS {db}.customer_composition AS
               SELECT tier, age_band, gender, region, occupation, education, value_class,
                      count() AS members, sum(spend_cents) AS spend_cents, sum(receipts) AS receipts,
                      spend_cents / greatest(receipts, 1) AS average_ticket_cents
               FROM {db}.customer_snapshots FINAL
               GROUP BY tier, age_band, gender, region, occupation, education, value_class""",
        ],
    ),
    (
        7,
        "reception records (staff acknowledgements of alerts, with notes) and their daily summary",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.reception_records (
                reception_id String,
                alert_id String,
                mall_id LowCardinality(String),
                zone_id LowCardinality(String),
                alert_kind LowCardinality(String),
                member_id Nullable(String),
                tier LowCardinality(Nullable(String)),
                alert_ts DateTime64(3, 'UTC'),
                staff_id String,
                acked_at DateTime64(3, 'UTC'),
                business_day Date,
                channel LowCardinality(String),
                note_kind LowCardinality(String),
                note String,{SINK_COLUMNS}
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(business_day) ORDER BY reception_id {DEDUP}""",
            # a plain view: a few hundred acknowledgements a day are summed when asked
            """CREATE VIEW IF NOT EXISTS {db}.reception_daily AS
               SELECT mall_id, business_day, zone_id, alert_kind, note_kind, count() AS records,
                      uniqExact(member_id) AS members, uniqExact(staff_id) AS staff,
                      round(avg(dateDiff('millisecond', alert_ts, acked_at)) / 1000, 1) AS mean_seconds_to_ack
               FROM {db}.reception_records GROUP BY mall_id, business_day, zone_id, alert_kind, note_kind""",
        ],
    ),
    (
        8,
        "ledger entries name their rule and version; daily totals per rule and campaign",
        [
            """ALTER TABLE {db}.ledger_entries
                 ADD COLUMN IF NOT EXISTS rule_id LowCardinality(String) AFTER business_day,
                 ADD COLUMN IF NOT EXISTS rule_version LowCardinality(String) AFTER rule_id,
                 ADD COLUMN IF NOT EXISTS amount Int64 AFTER rule_version,
                 ADD COLUMN IF NOT EXISTS voucher_id String AFTER amount,
                 ADD COLUMN IF NOT EXISTS reason String AFTER voucher_id,
                 ADD COLUMN IF NOT EXISTS by String AFTER reason""",
            # points earned and reversed by the kind of entry, now that a reduction rule earns negative points
            "DROP VIEW IF EXISTS {db}.points_daily_mv",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.points_daily_mv TO {db}.points_daily AS
               SELECT mall_id, business_day, store_id, account,
                      sumIf(delta, cause = 'points_earned') AS earned, sumIf(-delta, cause = 'points_reversed') AS reversed,
                      count() AS entries
               FROM {db}.ledger_entries WHERE account = 'points'
               GROUP BY mall_id, business_day, store_id, account""",
            # one row per day, rule (a voucher campaign is a rule) and kind of effect
            f"""CREATE TABLE IF NOT EXISTS {{db}}.rules_daily (
                mall_id LowCardinality(String),
                business_day Date,
                rule_id LowCardinality(String),
                rule_version LowCardinality(String),
                cause LowCardinality(String),
                account_kind LowCardinality(String),
                delta SimpleAggregateFunction(sum, Int64),
                amount SimpleAggregateFunction(sum, Int64),
                entries SimpleAggregateFunction(sum, UInt64),
                members AggregateFunction(uniq, String)
            ) ENGINE = AggregatingMergeTree
              ORDER BY (mall_id, business_day, rule_id, rule_version, cause, account_kind) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rules_daily_mv TO {db}.rules_daily AS
               SELECT mall_id, business_day, rule_id, rule_version, cause,
                      splitByChar(':', account)[1] AS account_kind,
                      sum(delta) AS delta, sum(amount) AS amount, count() AS entries, uniqState(member_id) AS members
               FROM {db}.ledger_entries
               GROUP BY mall_id, business_day, rule_id, rule_version, cause, account_kind""",
        ],
    ),
    (
        9,
        "campaign analysis: participants, their triggering spend and what was redeemed; composition by value class",
        [
            # per campaign and day: who took part, the spend of the receipts that earned the vouchers, redemptions
            """CREATE VIEW IF NOT EXISTS {db}.campaign_participation AS
               SELECT l.mall_id AS mall_id, l.business_day AS business_day, l.rule_id AS campaign_id,
                      uniqExactIf(l.member_id, l.cause = 'voucher_issued') AS members_issued,
                      uniqExactIf(l.member_id, l.cause = 'voucher_redeemed') AS members_redeemed,
                      countIf(l.cause = 'voucher_issued') AS vouchers_issued,
                      sumIf(l.delta, l.cause = 'voucher_issued') AS issued_cents,
                      -sumIf(l.delta, l.cause = 'voucher_redeemed') AS redeemed_cents,
                      -sumIf(l.delta, l.cause = 'voucher_clawed') AS clawed_cents,
                      sumIf(r.total_cents, l.cause = 'voucher_issued') AS triggering_spend_cents
               FROM {db}.ledger_entries AS l
               LEFT JOIN (SELECT txn_id, total_cents FROM {db}.receipts_by_member FINAL) AS r ON r.txn_id = l.txn_id
               WHERE l.cause IN ('voucher_issued', 'voucher_redeemed', 'voucher_clawed')
               GROUP BY mall_id, business_day, campaign_id""",
            """CREATE VIEW IF NOT EXISTS {db}.campaign_composition AS
               SELECT l.rule_id AS campaign_id, s.value_class AS value_class, s.lifecycle_stage AS lifecycle_stage,
                      uniqExact(l.member_id) AS members
               FROM {db}.ledger_entries AS l
               INNER JOIN (SELECT member_id, value_class, lifecycle_stage FROM {db}.customer_snapshots FINAL) AS s
                   ON s.member_id = l.member_id
               WHERE l.cause = 'voucher_issued'
               GROUP BY campaign_id, value_class, lifecycle_stage""",
        ],
    ),
    (
        10,
        "parking stays name the member whose card settles them; parking_charges: the fee, waiver and payment of each stay",
        [
            """ALTER TABLE {db}.parking_stays ADD COLUMN IF NOT EXISTS member_id String AFTER fee""",
            # A member's stay is priced on the card: its ledger entries (txn_id parking:<stay id>) say the fee, the
            # waiver and its reason, and the points or stored value that paid it. Anyone else's stay carries the fee
            # table's price. fee_cents is NULL while a member's stay is not settled yet, or when the entry was missed
            # (the length is unknown); paid_with is empty when nothing was due.
            _parking_charges("plate"),
        ],
    ),
    (
        11,
        "personal identifiers out of the analytics tables: EPCs and plates stored as keyed hashes",
        [
            # new rows carry HMAC-SHA256 values (mallstream/privacy.py; the key never reaches the server)
            "ALTER TABLE {db}.rfid_reads RENAME COLUMN IF EXISTS epc TO tag_hash",
            "ALTER TABLE {db}.parking_events RENAME COLUMN IF EXISTS plate TO plate_hash",
            "DROP VIEW IF EXISTS {db}.parking_charges",  # it reads the plate column
            "ALTER TABLE {db}.parking_stays RENAME COLUMN IF EXISTS plate TO plate_hash",
            _parking_charges("plate_hash"),
            # rows written before hold EPCs and plates as they are (a stay's row id names its plate, an event
            # without an id of its own is known by a hash of its content): they cannot be hashed here without
            # the key in SQL, and the server's query log, so they lose them
            f"""ALTER TABLE {{db}}.rfid_reads UPDATE tag_hash = '', event_id = ''
                WHERE NOT match(tag_hash, '{_HASHED}') {_AT_ONCE}""",
            f"""ALTER TABLE {{db}}.parking_events UPDATE plate_hash = '', event_id = ''
                WHERE NOT match(plate_hash, '{_HASHED}') {_AT_ONCE}""",
            f"""ALTER TABLE {{db}}.parking_stays UPDATE plate_hash = '', row_id = ''
                WHERE NOT match(plate_hash, '{_HASHED}') {_AT_ONCE}""",
            # (ledger entries of members' parking written before name their stay, and so its plate, in txn_id and
            # in entry_id, the table's key, which a mutation cannot change; new ones carry the stay's keyed hash)
        ],
    ),
    (
        12,
        "audit log: manual operations, schedule runs by hand and rule-file changes, with who, what, when and why",
        [
            # kept as long as the ledger it explains: no TTL
            f"""CREATE TABLE IF NOT EXISTS {{db}}.audit_log (
                audit_id String,
                kind LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                who String,
                actor String,
                what String,
                why String,
                outcome String,
                mall_id LowCardinality(String),
                member_id Nullable(String),
                subject String,
                detail String,{SINK_COLUMNS}
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (ts, audit_id) {DEDUP}""",
        ],
    ),
    (
        13,
        "parking occupancy per car park by hour (at its end, peak, entries, exits), kept when gate-event rows go",
        [
            # 30 car parks make 263,000 rows a year: kept for ever, like footfall_hourly. No day table: a day is
            # the mall's local one, which the rows do not know; reports sum hours into local days.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_hourly (
                mall_id LowCardinality(String),
                car_park_id LowCardinality(String),
                hour DateTime('UTC'),
                capacity SimpleAggregateFunction(max, UInt32),
                occupancy_end AggregateFunction(argMax, UInt32, Tuple(DateTime64(3, 'UTC'), String)),
                occupancy_peak SimpleAggregateFunction(max, UInt32),
                entries SimpleAggregateFunction(sum, Int64),
                exits SimpleAggregateFunction(sum, Int64)
            ) ENGINE = AggregatingMergeTree ORDER BY (mall_id, car_park_id, hour) {DEDUP}""",
            *(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.parking_hourly_from_{source.removeprefix('parking_')}_mv "
              f"TO {{db}}.parking_hourly AS {_parking_hourly_select(source)}" for source in _PARKING_HOURLY),
            # a migration cut short runs again from its start: the back-fill must not count twice
            "TRUNCATE TABLE {db}.parking_hourly",
            *(_parking_hourly_backfill(source) for source in _PARKING_HOURLY),
        ],
    ),
]
