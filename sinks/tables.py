"""The tables the sinks feed, each with its column list and the row of a record, and how long tables keep rows.

The column lists are the insert's: the sinks add where each row came from (``SOURCE_COLUMNS``
of :mod:`mallstream.sinks.clickhouse`). The tables themselves are made by :mod:`mallstream.sinks.migrations`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mallstream.streams.core.footfall import AreaBatch, RollupBatch
from mallstream.streams.core.parking import OccupancyBatch
from mallstream.streams.records import CustomerSnapshot

from .rows import (
    Row,
    alert_row,
    area_day_row,
    area_row,
    audit_row,
    dead_letter_row,
    footfall_row,
    health_row,
    in_column_order,
    ledger_row,
    parking_occupancy_row,
    parking_row,
    parking_stays_hashed,
    receipt_row,
    reception_row,
    rfid_row,
    rollup_row,
    snapshot_row,
    stay_row,
    visit_row,
)


def _alone(record: Any) -> tuple[Any]:
    return (record,)


def _batch_rows(batch: RollupBatch | AreaBatch | OccupancyBatch) -> Sequence[Any]:
    return batch.rows


@dataclass(frozen=True)
class SinkTable:
    """A table fed by a sink: its name, its columns (the first is the row's key), and the row of a record.

    ``unpack`` gives the records one message carries, for topics whose messages are batches of rows.
    ``pseudonymised`` columns get the row's identifier (an EPC, a plate) and store its keyed hash
    (:class:`mallstream.privacy.Pseudonym`): personal identifiers never reach ClickHouse as they are.
    """

    name: str
    columns: Sequence[str]
    #: a record -> its value of each column, by name
    values: Callable[[Any], Row]
    unpack: Callable[[Any], Sequence[Any]] = _alone
    pseudonymised: tuple[str, ...] = ()
    #: for identifiers inside other values: (row, pseudonym) -> the row as stored
    pseudonymise: Callable[[Row, Callable[[str], str]], Row] | None = None

    def row(self, record: Any) -> tuple[Any, ...]:
        """The record's row in column order, as the record has it (nothing hashed)."""
        return in_column_order(self.values(record), self.columns)

    def rows(self, message: Any, pseudonym: Callable[[str], str] | None = None) -> list[tuple[Any, ...]]:
        """The table rows of one message, pseudonymised columns hashed with ``pseudonym``."""
        records = self.unpack(message)
        if not self.pseudonymised and self.pseudonymise is None:
            return [self.row(record) for record in records]
        if pseudonym is None:
            raise ValueError(f"{self.name} stores personal identifiers: a pseudonym is needed")
        return [in_column_order(self._hashed(self.values(record), pseudonym), self.columns) for record in records]

    def _hashed(self, row: Row, pseudonym: Callable[[str], str]) -> Row:
        row = row | {column: pseudonym(row[column]) for column in self.pseudonymised}
        return self.pseudonymise(row, pseudonym) if self.pseudonymise else row


LEDGER_TABLE = SinkTable(
    "ledger_entries",
    (
        "entry_id",
        "mall_id",
        "member_id",
        "account",
        "delta",
        "balance_after",
        "cause",
        "txn_id",
        "store_id",
        "ts",
        "business_day",
        "rule_id",
        "rule_version",
        "amount",
        "voucher_id",
        "reason",
        "by",
    ),
    ledger_row,
    pseudonymise=parking_stays_hashed,
)
DEAD_LETTERS_TABLE = SinkTable("dead_letters", ("dead_letter_id", "source", "reason", "payload", "ts"), dead_letter_row)
RFID_READS_TABLE = SinkTable(
    "rfid_reads",
    ("event_id", "mall_id", "reader_id", "antenna", "tag_hash", "rssi_dbm", "ts", "clock_skew_s", "duplicate"),
    rfid_row,
    # a member's card is a tag: its EPC is a card number; an event without an id of its own is known by a hash
    # of its content, which would give a sequential card number away to anyone trying them all
    pseudonymised=("event_id", "tag_hash"),
)
FOOTFALL_TICKS_TABLE = SinkTable(
    "footfall_ticks",
    ("event_id", "mall_id", "counter_id", "ts", "interval_s", "count_in", "count_out", "clock_skew_s"),
    footfall_row,
)
PARKING_EVENTS_TABLE = SinkTable(
    "parking_events",
    ("event_id", "mall_id", "car_park_id", "gate_id", "plate_hash", "direction", "ts", "clock_skew_s"),
    parking_row,
    pseudonymised=("event_id", "plate_hash"),  # the same goes for plates, and a city's plates are few
)
DEVICE_HEALTH_TABLE = SinkTable(
    "device_health",
    (
        "report_id",
        "device_id",
        "ts",
        "last_seen",
        "frames",
        "events",
        "rejects",
        "duplicates",
        "errors",
        "refused",
        "last_error",
    ),
    health_row,
)
VIP_VISITS_TABLE = SinkTable(
    "vip_visits",
    (
        "row_id",
        "visit_id",
        "mall_id",
        "member_id",
        "tier",
        "visit_number",
        "arrived",
        "left",
        "path_places",
        "path_arrived",
        "path_dwell_s",
        "zone_dwell_s",
        "reads",
        "spend_cents",
        "txn_ids",
        "version",
    ),
    visit_row,
)
ALERTS_TABLE = SinkTable(
    "alerts",
    (
        "alert_id",
        "mall_id",
        "kind",
        "severity",
        "ts",
        "decided_at",
        "published_at",
        "member_id",
        "tier",
        "zone_id",
        "visit_id",
        "message",
    ),
    alert_row,
)
RECEPTION_TABLE = SinkTable(
    "reception_records",
    (
        "reception_id",
        "alert_id",
        "mall_id",
        "zone_id",
        "alert_kind",
        "member_id",
        "tier",
        "alert_ts",
        "staff_id",
        "acked_at",
        "business_day",
        "channel",
        "note_kind",
        "note",
    ),
    reception_row,
)
AUDIT_TABLE = SinkTable(
    "audit_log",
    ("audit_id", "kind", "ts", "who", "actor", "what", "why", "outcome", "mall_id", "member_id", "subject", "detail"),
    audit_row,
)
RECEIPTS_BY_MEMBER_TABLE = SinkTable(
    "receipts_by_member",
    (
        "txn_id",
        "mall_id",
        "member_id",
        "store_id",
        "kind",
        "ts",
        "business_day",
        "total_cents",
        "line_categories",
        "line_brands",
        "line_amount_cents",
    ),
    receipt_row,
)
CUSTOMER_SNAPSHOTS_TABLE = SinkTable(
    "customer_snapshots",
    ("snapshot_id", *CustomerSnapshot.__struct_fields__),
    snapshot_row,
)
FOOTFALL_ROLLUPS_TABLE = SinkTable(
    "footfall_rollups",
    (
        "row_id",
        "mall_id",
        "level",
        "key",
        "start",
        "local_day",
        "interval_s",
        "visitors_in",
        "visitors_out",
        "staff_in",
        "staff_out",
        "transactions",
        "passers_by",
        "late",
    ),
    rollup_row,
    _batch_rows,
)
AREA_OCCUPANCY_TABLE = SinkTable(
    "area_occupancy",
    (
        "row_id",
        "mall_id",
        "level",
        "key",
        "start",
        "interval_s",
        "occupancy",
        "occupancy_uncorrected",
        "density",
        "departures",
        "dwell_s",
    ),
    area_row,
    _batch_rows,
)
AREA_DAYS_TABLE = SinkTable(
    "area_days",
    (
        "row_id",
        "mall_id",
        "level",
        "key",
        "closed_at",
        "local_day",
        "visitors_in",
        "visitors_out_counted",
        "residual",
        "exit_scale_used",
        "exit_scale_next",
        "dwell_littles_s",
        "dwell_matched_s",
    ),
    area_day_row,
)
PARKING_STAYS_TABLE = SinkTable(
    "parking_stays",
    ("row_id", "mall_id", "car_park_id", "plate_hash", "entry", "exit", "exit_gate", "duration_s", "fee", "member_id"),
    stay_row,
    pseudonymised=("row_id", "plate_hash"),  # the row id names the plate
)
PARKING_OCCUPANCY_TABLE = SinkTable(
    "parking_occupancy",
    ("event_id", "mall_id", "car_park_id", "ts", "occupancy", "capacity"),
    parking_occupancy_row,
    _batch_rows,
)


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
    "device_health": Retention(
        90,
        why="a device's recent health for the devices board and its alarms: the "
        "events it counted are in the event tables (kept), and a device's "
        "health a season ago tells nothing about it now",
    ),
}
