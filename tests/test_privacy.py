"""No analytics table holds names, phone numbers or card numbers: the schema the migrations create on the
real engine is checked column by column, and sensitive values sent through the sinks' row mappings are
looked for in every stored string."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mallstream.privacy import Pseudonym, mask_card_numbers, mask_phone_numbers
from mallstream.settings import ClickHouse, Privacy, Settings
from mallstream.sinks.clickhouse import SourcePosition, TableSink, sourced
from mallstream.sinks.tables import (
    ALERTS_TABLE,
    DEAD_LETTERS_TABLE,
    PARKING_EVENTS_TABLE,
    PARKING_STAYS_TABLE,
    RECEPTION_TABLE,
    RFID_READS_TABLE,
    SinkTable,
)
from mallstream.sinks.warehouse import open_warehouse
from mallstream.streams.app import SUNK_TOPICS
from mallstream.streams.core.parking import ParkingStay
from mallstream.streams.records import Alert, ParkingEvent, ReceptionRecord, RfidRead, dead_letter

TS = dt.datetime(2026, 11, 21, 6, tzinfo=dt.UTC)
NAME, PHONE, CARD_NUMBER = "Alice Wang", "138 0013 8000", "4111 1111 1111 1111"
EPC, PLATE = "E2801160000000000000A001", "沪A12345"

#: Words that, as a part of a column name, say it holds who someone is or how to reach them.
PERSONAL = {
    "name",
    "names",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "phone",
    "mobile",
    "tel",
    "telephone",
    "email",
    "mail",
    "card",
    "cardno",
    "pan",
    "epc",
    "plate",
    "address",
    "passport",
    "idcard",
    "birthday",
    "birthdate",
    "dob",
    "wechat",
    "openid",
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    wh = open_warehouse(ClickHouse(path=tmp_path_factory.mktemp("ch") / "db"))
    wh.migrate()
    yield wh
    wh.close()


def personal(column: str) -> bool:
    parts = column.lower().split("_")
    return bool(PERSONAL & set(parts)) or "card_no" in column.lower() or "card_number" in column.lower()


def test_no_table_or_view_has_a_column_for_names_phones_or_card_numbers(warehouse):
    pseudonymised = {(table.name, column) for _, table in SUNK_TOPICS for column in table.pseudonymised}
    _, columns = warehouse.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String}", {"db": warehouse.database}
    )
    assert len({table for table, _ in columns}) > 30  # every table, view and roll-up the migrations made
    hashes = {column for _, column in pseudonymised if column.endswith("_hash")}
    offending = [f"{table}.{column}" for table, column in columns if personal(column) and column not in hashes]
    assert offending == []
    # the identifiers kept are the keyed-hash columns the sinks fill, and a view passing one on
    assert {(t, c) for t, c in columns if c.endswith("_hash")} == {
        ("rfid_reads", "tag_hash"),
        ("parking_events", "plate_hash"),
        ("parking_stays", "plate_hash"),
        ("parking_charges", "plate_hash"),
    }


def sample_rows(pseudonym: Pseudonym) -> dict[SinkTable, list[tuple]]:
    """Records carrying a name, a phone number, a card number, an EPC and a plate, as the sinks store them."""
    alert = Alert(
        alert_id="a-1",
        mall_id="m",
        kind="vip_arrival",
        ts=TS,
        member_id="M000001",
        zone_id="E-north",
        tier="vip",
        name=NAME,
        message=f"VIP {NAME} arrived at E-north",
    )
    read = RfidRead(reader_id="R-north", antenna=1, epc=EPC, rssi_dbm=-50.0, ts=TS, mall_id="m")  # no event id
    gate = ParkingEvent(gate_id="G-in-1", car_park_id="P-B2", plate=PLATE, direction="entry", ts=TS, mall_id="m")
    stay = ParkingStay(
        mall_id="m",
        car_park_id="P-B2",
        plate=PLATE,
        entry=TS,
        exit=TS + dt.timedelta(hours=1),
        exit_gate="G-out-1",
        duration_s=3600.0,
        fee=None,
    )
    note = ReceptionRecord(
        reception_id="r-1",
        alert_id="a-1",
        mall_id="m",
        zone_id="E-north",
        alert_kind="vip_arrival",
        member_id="M000001",
        tier="vip",
        alert_ts=TS,
        staff_id="S-17",
        acked_at=TS,
        business_day=TS.date(),
        channel="http",
        note_kind="request",
        note=f"please call back on {PHONE}",
    )
    letter = dead_letter("pos", "bad tender", f'{{"tenders": [{{"type": "card", "reference": "{CARD_NUMBER}"}}]}}')
    messages = {
        ALERTS_TABLE: alert,
        RFID_READS_TABLE: read,
        PARKING_EVENTS_TABLE: gate,
        PARKING_STAYS_TABLE: stay,
        RECEPTION_TABLE: note,
        DEAD_LETTERS_TABLE: letter,
    }
    return {table: table.rows(message, pseudonym) for table, message in messages.items()}


def test_names_phones_card_numbers_epcs_and_plates_are_never_stored(warehouse, tmp_path):
    pseudonym = Pseudonym(b"k" * 32)
    for table, rows in sample_rows(pseudonym).items():
        sink = TableSink(warehouse, table.name, table.columns)
        sink.write([sourced(row, SourcePosition("privacy-test", 0, offset)) for offset, row in enumerate(rows)])
    _, strings = warehouse.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String} AND type LIKE '%String%' "
        "AND table IN (SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree')",
        {"db": warehouse.database},
    )
    digits = re.compile(r"\D")
    stored = []
    for table, column in strings:
        _, values = warehouse.query(f"SELECT toString(`{column}`) FROM {{db}}.`{table}`")
        stored += [(table, column, value) for (value,) in values if value]
    assert any(value == pseudonym(EPC) for _, column, value in stored)  # the rows are there, hashed
    for secret in (NAME, EPC, PLATE, "A12345"):
        assert [s for s in stored if secret.lower() in s[2].lower()] == [], secret
    for number in (PHONE, CARD_NUMBER):  # also not with its spaces taken out
        assert [s for s in stored if digits.sub("", number) in digits.sub("", s[2])] == [], number
    _, [(message,)] = warehouse.query("SELECT message FROM {db}.alerts WHERE alert_id = 'a-1'")
    assert message == "VIP M000001 arrived at E-north"
    _, [(note,)] = warehouse.query("SELECT note FROM {db}.reception_records WHERE reception_id = 'r-1'")
    assert note == "please call back on *******8000"


def test_the_keyed_hash_joins_across_tables_and_cannot_be_made_without_the_key(tmp_path, monkeypatch):
    one, other = Pseudonym(b"a" * 32), Pseudonym(b"b" * 32)
    assert one(PLATE) == one(PLATE.lower()) and one(EPC) == one(f" {EPC.lower()} ")  # as devices spell them
    assert one(PLATE) != other(PLATE) and len(one(PLATE)) == 32
    event = sample_rows(one)[PARKING_EVENTS_TABLE][0]
    stay = sample_rows(one)[PARKING_STAYS_TABLE][0]
    assert (
        event[PARKING_EVENTS_TABLE.columns.index("plate_hash")] == stay[PARKING_STAYS_TABLE.columns.index("plate_hash")]
    )
    with pytest.raises(ValueError, match="a pseudonym is needed"):
        RFID_READS_TABLE.rows(RfidRead(reader_id="R", antenna=1, epc=EPC, rssi_dbm=-50.0, ts=TS))
    # the key: from the environment, else a file made once (0600) and read by every later start
    settings = Settings(malls=[{"id": "m"}], privacy=Privacy(hash_key_file=tmp_path / "auth" / "hash.key"))
    monkeypatch.delenv("MALLSTREAM_HASH_KEY", raising=False)
    first = Pseudonym.of(settings)
    assert (tmp_path / "auth" / "hash.key").stat().st_mode & 0o777 == 0o600
    assert Pseudonym.of(settings)(EPC) == first(EPC)
    monkeypatch.setenv("MALLSTREAM_HASH_KEY", "a-key-shared-by-every-worker-of-the-hub")
    assert Pseudonym.of(settings)(EPC) != first(EPC)
    assert "key" in repr(first) and "a-key" not in repr(Pseudonym.of(settings))


def test_phone_and_card_numbers_are_masked_but_other_numbers_stay():
    assert (
        mask_phone_numbers("call +86 138-0013-8000 or 021 6123 4567 at 3pm")
        == "call *********8000 or *******4567 at 3pm"
    )
    assert (
        mask_phone_numbers("VIP room at 15:30, table 12, receipt S101-T1-20261121-0042")
        == "VIP room at 15:30, table 12, receipt S101-T1-20261121-0042"
    )
    assert mask_card_numbers('"reference": "4111 1111 1111 1111"') == '"reference": "************1111"'
    assert mask_card_numbers('"time": 1732176000000, "seq": 20261121') == '"time": 1732176000000, "seq": 20261121'
