"""What each record stores in its table, as a mapping from column name to value.

A row names its columns, so it cannot drift from the table's column list: :func:`in_column_order`
lays it out in the table's order and refuses a row that names a column the table lacks or misses one.
A record's field is stored in the column of the same name unless its row says otherwise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from mallstream.privacy import mask_card_numbers, mask_phone_numbers
from mallstream.streams.core.footfall import RollupRow
from mallstream.streams.core.occupancy import AreaDay, AreaRow
from mallstream.streams.core.parking import ParkingOccupancy, ParkingStay
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

#: A table row: column name -> value.
Row = dict[str, Any]

#: The cause of a member's parking entries: ``parking:<stay id>``, and a stay id names the car's plate.
PARKING_CAUSE = "parking:"


def in_column_order(row: Row, columns: Sequence[str]) -> tuple[Any, ...]:
    """The row's values in the order of ``columns``, as inserts send them.

    A column the row misses raises ``KeyError``; one the table lacks raises ``ValueError`` rather
    than being dropped unseen (a misspelt column would otherwise store nothing).
    """
    values = tuple(map(row.__getitem__, columns))
    if len(row) != len(values):
        raise ValueError(f"not columns of the table: {sorted(row.keys() - set(columns))}")
    return values


def _fields(record: msgspec.Struct, *leaving_out: str) -> Row:
    """The record's fields, each in the column of its name."""
    return {name: getattr(record, name) for name in record.__struct_fields__ if name not in leaving_out}


def ledger_row(entry: LedgerEntry) -> Row:
    # a re-emitted entry is the same row: the sink drops it by its id
    return _fields(entry, "replayed")


def parking_stays_hashed(row: Row, pseudonym: Callable[[str], str]) -> Row:
    """A member's parking entry with its stay's keyed hash where the stay id (and its plate) stood.

    ``parking:<hash>``: the hash is the stay's row id in parking_stays, so parking_charges still joins them.
    """
    entry_id, txn_id = row["entry_id"], row["txn_id"]
    if not txn_id.startswith(PARKING_CAUSE):
        return row
    stay = PARKING_CAUSE + pseudonym(txn_id.removeprefix(PARKING_CAUSE))
    # an entry id is its cause and more, unless it was long and cut (then it is hashed whole)
    entry_id = stay + entry_id[len(txn_id) :] if entry_id.startswith(txn_id) else PARKING_CAUSE + pseudonym(entry_id)
    return row | {"entry_id": entry_id, "txn_id": stay}


def dead_letter_row(letter: DeadLetter) -> Row:
    # a refused receipt may carry a bank card number in a tender's reference
    return _fields(letter) | {"payload": mask_card_numbers(letter.payload)}


def rfid_row(read: RfidRead) -> Row:
    return _fields(read, "epc") | {"event_id": identity(read), "mall_id": read.mall_id or "", "tag_hash": read.epc}


def footfall_row(tick: FootfallTick) -> Row:
    return _fields(tick) | {"event_id": identity(tick), "mall_id": tick.mall_id or ""}


def parking_row(event: ParkingEvent) -> Row:
    return _fields(event, "plate") | {
        "event_id": identity(event),
        "mall_id": event.mall_id or "",
        "plate_hash": event.plate,
    }


def visit_row(visit: VipVisit) -> Row:
    # an amended visit (late spend) is a new row of the same visit, with one more receipt
    return _fields(visit, "path") | {
        "row_id": f"{visit.visit_id}:{len(visit.txn_ids)}:{visit.spend_cents}",
        "path_places": [stop.place for stop in visit.path],
        "path_arrived": [stop.arrived for stop in visit.path],
        "path_dwell_s": [stop.dwell_s for stop in visit.path],
        "version": len(visit.txn_ids),
    }


def alert_row(alert: Alert) -> Row:
    # a tier that allows names gets them on screens and pagers; the table names the member by id
    message = alert.message.replace(alert.name, alert.member_id or "member") if alert.name else alert.message
    return {
        "alert_id": alert.alert_id,
        "mall_id": alert.mall_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "ts": alert.ts,
        "decided_at": alert.decided_at,
        "published_at": alert.published_at,
        "member_id": alert.member_id,
        "tier": alert.tier,
        "zone_id": alert.zone_id,
        "visit_id": alert.visit_id,
        "message": message,
    }


def reception_row(record: ReceptionRecord) -> Row:
    # a note may hold the number a member asked to be called back on
    return _fields(record) | {
        "zone_id": record.zone_id or "",
        "note_kind": record.note_kind or "",
        "note": mask_phone_numbers(record.note),
    }


def health_row(health: DeviceHealth) -> Row:
    return _fields(health) | {"report_id": f"{health.device_id}@{health.ts.isoformat()}"}


def audit_row(record: AuditRecord) -> Row:
    return _fields(record) | {"why": mask_phone_numbers(record.why)}


def receipt_row(txn: PosTransaction) -> Row:
    sign = txn.sign  # amounts are stored signed: a return or void counts against the sale
    return {
        "txn_id": txn.txn_id,
        "mall_id": txn.mall_id or "",
        "member_id": txn.member_id,
        "store_id": txn.store_id,
        "kind": txn.kind,
        "ts": txn.ts,
        "business_day": txn.business_day,
        "total_cents": sign * int(txn.total * 100),
        "line_categories": [line.category for line in txn.lines],
        "line_brands": [line.brand for line in txn.lines],
        "line_amount_cents": [sign * int(line.amount * 100) for line in txn.lines],
    }


def snapshot_row(snapshot: CustomerSnapshot) -> Row:
    # keyed by content: every new snapshot of a member is a row (the latest as_of wins), a redelivered one is not
    return _fields(snapshot) | {"snapshot_id": hashlib.blake2b(encode(snapshot), digest_size=16).hexdigest()}


def _area_id(mall_id: str, level: str, key: str, moment: dt.datetime) -> str:
    """Rows of one area and moment have one id however often they are emitted (a redelivery, a restart)."""
    return f"{mall_id}:{level}:{key}:{int(moment.timestamp())}"


def rollup_row(row: RollupRow) -> Row:
    # a late row is one event's addition to its interval: that event names it
    row_id = _area_id(row.mall_id, row.level, row.key, row.start) + (f":late:{row.cause}" if row.late else "")
    return _fields(row, "cause") | {"row_id": row_id, "local_day": row.start.date()}


def area_row(row: AreaRow) -> Row:
    return _fields(row) | {"row_id": _area_id(row.mall_id, row.level, row.key, row.start)}


def area_day_row(day: AreaDay) -> Row:
    # the business day it closes: a mall emptying at 01:00 closes the day before
    return _fields(day) | {
        "row_id": _area_id(day.mall_id, day.level, day.key, day.closed_at),
        "local_day": (day.closed_at - dt.timedelta(hours=12)).date(),
    }


def stay_row(stay: ParkingStay) -> Row:
    return _fields(stay, "plate") | {"row_id": stay.stay_id, "plate_hash": stay.plate}


def parking_occupancy_row(row: ParkingOccupancy) -> Row:
    # a row per gate event, known by that event
    return _fields(row, "cause") | {"event_id": row.cause}
