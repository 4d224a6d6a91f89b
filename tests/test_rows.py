"""Rows by column name: a record's row is laid out by its table's own column list, and lands where it says.

One record of every sunk topic, with the columns its row derives rather than copies from a field of
the same name: checked as the sink builds them, then as the real engine stores them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from mallstream.privacy import Pseudonym, mask_card_numbers, mask_phone_numbers
from mallstream.settings import ClickHouse
from mallstream.sinks.clickhouse import SourcePosition, TableSink, sourced
from mallstream.sinks.rows import in_column_order
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
from mallstream.sinks.warehouse import open_warehouse
from mallstream.streams.app import SUNK_TOPICS
from mallstream.streams.core.footfall import AreaBatch, RollupBatch, RollupRow
from mallstream.streams.core.occupancy import AreaDay, AreaRow
from mallstream.streams.core.parking import OccupancyBatch, ParkingOccupancy, ParkingStay
from mallstream.streams.records import (
    Alert,
    AuditRecord,
    CustomerSnapshot,
    DeviceHealth,
    FootfallTick,
    LedgerEntry,
    ParkingEvent,
    PathStop,
    PosLine,
    PosTransaction,
    ReceptionRecord,
    RfidRead,
    VipVisit,
    dead_letter,
    identity,
)

TS = dt.datetime(2026, 11, 21, 4, tzinfo=dt.UTC)
EPOCH_S = int(TS.timestamp())
EPC, PLATE, PHONE = "E2801160000000000000A001", "沪A12345", "138 0013 8000"
PSEUDONYM = Pseudonym(b"k" * 32)
STAY = f"P-B2:{PLATE}:{EPOCH_S * 1000}"


def ledger_entry(entry_id: str, txn_id: str) -> LedgerEntry:
    return LedgerEntry(
        entry_id=entry_id,
        mall_id="m",
        member_id="M1",
        account="points",
        delta=-50,
        balance_after=950,
        cause="points_spent",
        txn_id=txn_id,
        store_id="",
        ts=TS,
        business_day=TS.date(),
        rule_id="parking-fee",
        rule_version="3",
    )


RFID_READ = RfidRead(reader_id="R-north", antenna=1, epc=EPC, rssi_dbm=-50.0, ts=TS)  # no id, no mall
DEAD_LETTER = dead_letter("pos", "bad tender", '{"tenders": [{"reference": "4111 1111 1111 1111"}]}')
CLOSED_AT = dt.datetime(2026, 11, 21, 1, tzinfo=dt.UTC)

#: table -> a message of its topic, and per row the columns the row derives
SAMPLES: dict[SinkTable, tuple[Any, list[dict[str, Any]]]] = {
    LEDGER_TABLE: (
        ledger_entry(f"parking:{STAY}:points_spent:parking-fee:points", f"parking:{STAY}"),
        [
            {
                "entry_id": f"parking:{PSEUDONYM(STAY)}:points_spent:parking-fee:points",
                "txn_id": f"parking:{PSEUDONYM(STAY)}",
                "rule_id": "parking-fee",
                "delta": -50,
            }
        ],
    ),
    DEAD_LETTERS_TABLE: (DEAD_LETTER, [{"payload": mask_card_numbers(DEAD_LETTER.payload)}]),
    RFID_READS_TABLE: (
        RFID_READ,
        [{"event_id": PSEUDONYM(identity(RFID_READ)), "mall_id": "", "tag_hash": PSEUDONYM(EPC), "antenna": 1}],
    ),
    FOOTFALL_TICKS_TABLE: (
        FootfallTick(counter_id="C-1", ts=TS, count_in=3, count_out=1, event_id="e-1"),
        [{"event_id": "e-1", "mall_id": "", "count_in": 3, "count_out": 1}],
    ),
    PARKING_EVENTS_TABLE: (
        ParkingEvent(
            gate_id="G-in-1", car_park_id="P-B2", plate=PLATE, direction="entry", ts=TS, mall_id="m", event_id="g-1"
        ),
        [{"event_id": PSEUDONYM("g-1"), "plate_hash": PSEUDONYM(PLATE), "gate_id": "G-in-1"}],
    ),
    DEVICE_HEALTH_TABLE: (
        DeviceHealth(device_id="R-north", ts=TS, frames=5, errors=1),
        [{"report_id": "R-north@2026-11-21T04:00:00+00:00", "frames": 5, "errors": 1}],
    ),
    VIP_VISITS_TABLE: (
        VipVisit(
            visit_id="v-1",
            mall_id="m",
            member_id="M1",
            tier="vip",
            visit_number=3,
            arrived=TS,
            left=TS + dt.timedelta(hours=1),
            path=[
                PathStop("E-north", TS, TS + dt.timedelta(minutes=1), 60.0),
                PathStop("Z-1", TS + dt.timedelta(minutes=1), TS + dt.timedelta(hours=1), 3540.0),
            ],
            zone_dwell_s={"Z-1": 3540.0},
            reads=9,
            spend_cents=12345,
            txn_ids=["t-1", "t-2"],
        ),
        [
            {
                "row_id": "v-1:2:12345",
                "path_places": ["E-north", "Z-1"],
                "path_dwell_s": [60.0, 3540.0],
                "version": 2,
                "txn_ids": ["t-1", "t-2"],
            }
        ],
    ),
    ALERTS_TABLE: (
        Alert(
            alert_id="a-1",
            mall_id="m",
            kind="vip_arrival",
            ts=TS,
            member_id="M1",
            tier="vip",
            name="Alice Wang",
            message="VIP Alice Wang arrived at E-north",
        ),
        [{"message": "VIP M1 arrived at E-north", "member_id": "M1"}],
    ),
    RECEPTION_TABLE: (
        ReceptionRecord(
            reception_id="r-1",
            alert_id="a-1",
            mall_id="m",
            zone_id=None,
            alert_kind="vip_arrival",
            member_id="M1",
            tier="vip",
            alert_ts=TS,
            staff_id="S-17",
            acked_at=TS,
            business_day=TS.date(),
            channel="http",
            note=f"call {PHONE}",
        ),
        [{"zone_id": "", "note_kind": "", "note": mask_phone_numbers(f"call {PHONE}")}],
    ),
    AUDIT_TABLE: (
        AuditRecord(
            audit_id="op-1",
            kind="manual_operation",
            ts=TS,
            who="desk-3",
            actor="key:desk",
            what="adjust points",
            why=f"member called from {PHONE}",
        ),
        [{"why": mask_phone_numbers(f"member called from {PHONE}"), "who": "desk-3"}],
    ),
    RECEIPTS_BY_MEMBER_TABLE: (
        PosTransaction(
            txn_id="t-9",
            store_id="S-1",
            workstation_id="W-1",
            seq=1,
            ts=TS,
            business_day=TS.date(),
            kind="return",
            total=Decimal("12.50"),
            lines=[
                PosLine(
                    sku="K",
                    qty=Decimal(1),
                    unit_price=Decimal("12.50"),
                    amount=Decimal("12.50"),
                    category="shoes",
                    brand="B",
                )
            ],
            tenders=[],
            member_id="M1",
            original_txn_id="t-8",
        ),
        [
            {
                "mall_id": "",
                "total_cents": -1250,
                "line_amount_cents": [-1250],
                "line_categories": ["shoes"],
                "line_brands": ["B"],
            }
        ],
    ),
    CUSTOMER_SNAPSHOTS_TABLE: (
        CustomerSnapshot(
            member_id="M1",
            mall_id="m",
            as_of=TS,
            first_purchase=None,
            last_purchase=TS.date(),
            repeat_days=0,
            receipts=1,
            spend_cents=900,
            p_alive=None,
            lifecycle_stage=None,
            rfm_segment=None,
            value_class="C",
            alert="",
            top_brands=["B"],
            top_categories=[],
            price_band_cents=[],
            weekday_visits=[],
            hour_visits=[],
        ),
        [{"member_id": "M1", "spend_cents": 900, "top_brands": ["B"]}],
    ),
    FOOTFALL_ROLLUPS_TABLE: (
        RollupBatch(
            [
                RollupRow("m", "zone", "Z-1", TS, 60, visitors_in=4),
                RollupRow("m", "zone", "Z-1", TS, 60, visitors_in=1, late=True, cause="e-9"),
            ]
        ),
        [
            {"row_id": f"m:zone:Z-1:{EPOCH_S}", "local_day": TS.date(), "visitors_in": 4},
            {"row_id": f"m:zone:Z-1:{EPOCH_S}:late:e-9", "local_day": TS.date(), "late": True},
        ],
    ),
    AREA_OCCUPANCY_TABLE: (
        AreaBatch([AreaRow("m", "zone", "Z-1", TS, 60, 12, 13, None, 2.0, 300.0)]),
        [{"row_id": f"m:zone:Z-1:{EPOCH_S}", "occupancy": 12, "occupancy_uncorrected": 13}],
    ),
    AREA_DAYS_TABLE: (
        AreaDay("m", "zone", "Z-1", CLOSED_AT, 100, 90, 10.0, 1.0, 1.1, None, None),
        [
            {
                "row_id": f"m:zone:Z-1:{int(CLOSED_AT.timestamp())}",
                "local_day": dt.date(2026, 11, 20),
                "visitors_in": 100,
            }
        ],
    ),  # emptied after midnight
    PARKING_STAYS_TABLE: (
        ParkingStay("m", "P-B2", PLATE, TS - dt.timedelta(hours=1), TS, "G-out-1", 3600.0),
        [{"row_id": PSEUDONYM(STAY), "plate_hash": PSEUDONYM(PLATE), "exit_gate": "G-out-1"}],
    ),
    PARKING_OCCUPANCY_TABLE: (
        OccupancyBatch([ParkingOccupancy("m", "P-B2", TS, 41, 400, cause="g-1")]),
        [{"event_id": "g-1", "occupancy": 41, "capacity": 400}],
    ),
}


def test_a_row_must_name_exactly_its_tables_columns():
    columns = ("entry_id", "delta", "ts")
    assert in_column_order({"ts": TS, "entry_id": "e", "delta": 5}, columns) == ("e", 5, TS)
    with pytest.raises(KeyError, match="delta"):
        in_column_order({"ts": TS, "entry_id": "e"}, columns)
    with pytest.raises(ValueError, match="detla"):
        in_column_order({"ts": TS, "entry_id": "e", "delta": 5, "detla": 5}, columns)


def test_a_members_parking_entries_name_their_stay_by_its_keyed_hash_and_other_entries_stay_as_they_are():
    cut = "parking:" + "x" * 120  # a long entry id was cut: it no longer starts with its txn_id
    [row] = LEDGER_TABLE.rows(ledger_entry(cut, f"parking:{STAY}"), PSEUDONYM)
    stored = dict(zip(LEDGER_TABLE.columns, row, strict=True))
    assert (stored["entry_id"], stored["txn_id"]) == (f"parking:{PSEUDONYM(cut)}", f"parking:{PSEUDONYM(STAY)}")
    earned = ledger_entry("t-1:points_earned:earn-base:points", "t-1")
    assert LEDGER_TABLE.rows(earned, PSEUDONYM) == [LEDGER_TABLE.row(earned)]
    assert LEDGER_TABLE.row(earned)[:2] == ("t-1:points_earned:earn-base:points", "m")


def test_every_sunk_topics_rows_carry_what_their_records_say_column_by_column():
    assert set(SAMPLES) == {table for _, table in SUNK_TOPICS}
    for table, (message, expected) in SAMPLES.items():
        rows = table.rows(message, PSEUDONYM)
        assert len(rows) == len(expected), table.name
        for row, derived in zip(rows, expected, strict=True):
            stored = dict(zip(table.columns, row, strict=True))
            assert {column: stored[column] for column in derived} == derived, table.name


def test_the_engine_stores_every_sunk_topics_rows_under_their_columns(tmp_path):
    warehouse = open_warehouse(ClickHouse(path=tmp_path / "clickhouse"))
    try:
        warehouse.migrate()
        for table, (message, expected) in SAMPLES.items():
            rows = table.rows(message, PSEUDONYM)
            sink = TableSink(warehouse, table.name, table.columns)
            assert sink.write(
                [sourced(row, SourcePosition("rows-test", 0, offset)) for offset, row in enumerate(rows)]
            ) == len(rows), table.name
            for row, derived in zip(rows, expected, strict=True):
                _, stored = warehouse.query(
                    f"SELECT {', '.join(derived)} FROM {{db}}.{table.name} WHERE {table.columns[0]} = {{key:String}}",
                    {"key": row[0]},
                )
                assert stored == [tuple(derived.values())], table.name
    finally:
        warehouse.close()
