"""The ClickHouse sink against the real engine, embedded (chdb) and as a server over HTTP:
redelivery, replays, view repair, every column type."""

import datetime as dt
from decimal import Decimal

import pytest

from mallstream.settings import ClickHouse
from mallstream.sinks.arrow import arrow_type
from mallstream.sinks.clickhouse import SOURCE_COLUMNS, SourcePosition, TableSink, sourced
from mallstream.sinks.tables import LEDGER_TABLE
from mallstream.sinks.warehouse import open_warehouse
from mallstream.streams.app import SUNK_TOPICS
from mallstream.streams.records import LedgerEntry

TS = dt.datetime(2026, 11, 21, 4, tzinfo=dt.UTC)


@pytest.fixture(scope="module", params=["embedded", "server"])
def warehouse(request, tmp_path_factory):
    if request.param == "embedded":
        config = ClickHouse(path=tmp_path_factory.mktemp("ch") / "db")
    else:
        config = request.getfixturevalue("server")
    wh = open_warehouse(config)
    wh.migrate()
    yield wh
    wh.close()


def row(i: int, delta: int = 10, store: str = "S1", ts: dt.datetime = TS) -> tuple:
    cause = "points_earned" if delta > 0 else "points_reversed"
    return LEDGER_TABLE.row(
        LedgerEntry(
            entry_id=f"t{i}:{cause}:earn-base:points",
            mall_id="mall",
            member_id=f"M{i % 3}",
            account="points",
            delta=delta,
            balance_after=delta,
            cause=cause,
            txn_id=f"t{i}",
            store_id=store,
            ts=ts,
            business_day=ts.date(),
            rule_id="earn-base",
            rule_version="1-test",
        )
    )


def totals(warehouse) -> tuple:
    _, ledger = warehouse.query("SELECT count(), sum(delta) FROM {db}.ledger_entries")
    _, rollup = warehouse.query("SELECT sum(earned), sum(reversed), sum(entries) FROM {db}.points_daily")
    return ledger[0], rollup[0]


def feed(sink, rows, start_offset=0) -> int:
    """Write ``rows`` as one batch read from ledger partition 0 at ``start_offset``; return how many were new."""
    return sink.write([sourced(r, SourcePosition("ledger", 0, start_offset + i)) for i, r in enumerate(rows)])


def test_redelivered_and_replayed_rows_are_not_counted_twice(sink, warehouse):
    assert feed(sink, [row(1), row(2), row(1)]) == 2  # a duplicate inside one batch
    assert feed(sink, [row(1), row(2), row(3, delta=-4)], start_offset=3) == 1  # a redelivery plus one new row
    assert sink.stats.rows_skipped == 3
    assert totals(warehouse) == ((3, 16), (20, 4, 3))


def test_repair_fills_a_view_that_missed_a_batch_and_changes_nothing_else(sink, warehouse):
    feed(sink, [row(1), row(2), row(3)])
    # a crash between the table insert and the view insert: the view misses the next batch
    warehouse.command("DETACH TABLE {db}.points_daily_mv")
    feed(sink, [row(4), row(5), row(6)], start_offset=3)
    warehouse.command("ATTACH TABLE {db}.points_daily_mv")
    assert totals(warehouse) == ((6, 60), (30, 0, 3))
    assert len(sink.repair()) == 2
    assert totals(warehouse) == ((6, 60), (60, 0, 6))
    sink.repair()
    assert totals(warehouse) == ((6, 60), (60, 0, 6))


#: the last day of one month and the first of the next: the ledger is partitioned by month
MONTH_END, MONTH_START = dt.datetime(2025, 10, 31, 22, tzinfo=dt.UTC), dt.datetime(2025, 11, 1, 2, tzinfo=dt.UTC)


def test_repair_changes_nothing_for_batches_across_months_whose_parts_were_merged(sink, warehouse):
    """A history backlog's batches span months, and the engine merges parts: the re-insert must still be a no-op."""
    before = totals(warehouse)
    for start in (100, 110, 120, 130):
        rows = [row(start + i, ts=MONTH_END if i % 2 else MONTH_START) for i in range(6)]
        feed(sink, rows, start_offset=start)
    grown = totals(warehouse)
    assert grown[0][0] == before[0][0] + 24
    warehouse.command("OPTIMIZE TABLE {db}.ledger_entries FINAL")
    warehouse.command("OPTIMIZE TABLE {db}.points_daily FINAL")
    assert len(sink.repair()) == 3
    assert totals(warehouse) == grown


def test_repair_fills_a_view_that_missed_a_batch_across_months(sink, warehouse):
    before = totals(warehouse)
    warehouse.command("DETACH TABLE {db}.points_daily_mv")
    feed(sink, [row(200 + i, ts=MONTH_END if i % 2 else MONTH_START) for i in range(4)], start_offset=200)
    warehouse.command("ATTACH TABLE {db}.points_daily_mv")
    warehouse.command("OPTIMIZE TABLE {db}.ledger_entries FINAL")
    sink.repair()
    (count, delta), (earned, reversed_, entries) = before
    assert totals(warehouse) == ((count + 4, delta + 40), (earned + 40, reversed_, entries + 4))


def test_migrations_are_recorded_and_run_once(warehouse):
    assert warehouse.migrate() == []
    _, rows = warehouse.query("SELECT count() FROM {db}.schema_migrations")
    assert rows[0][0] >= 1


def test_repair_finds_a_crashed_workers_batch_behind_other_workers_newer_ones(sink, warehouse):
    crashed = TableSink(warehouse, LEDGER_TABLE.name, LEDGER_TABLE.columns, worker_tag="host-a")
    busy = TableSink(warehouse, LEDGER_TABLE.name, LEDGER_TABLE.columns, worker_tag="host-b")
    warehouse.command("DETACH TABLE {db}.points_daily_mv")
    feed(crashed, [row(1), row(2), row(3)])
    warehouse.command("ATTACH TABLE {db}.points_daily_mv")
    for start in (10, 20, 30, 40):
        feed(busy, [row(start), row(start + 1), row(start + 2)], start_offset=start)
    assert totals(warehouse) == ((15, 150), (120, 0, 12))
    crashed.repair()
    assert totals(warehouse) == ((15, 150), (150, 0, 15))


def test_every_column_a_sink_writes_has_an_arrow_type(warehouse):
    for _, table in SUNK_TOPICS:
        schema = warehouse.schema(table.name, (*table.columns, *SOURCE_COLUMNS))
        assert schema.names == [*table.columns, *SOURCE_COLUMNS], table.name


def test_values_of_every_kind_arrive_as_they_were_sent(warehouse):
    """Inserts go as Arrow typed from the table: maps, decimals, enums, empty arrays and microseconds included."""
    warehouse.command("DROP TABLE IF EXISTS {db}.kinds")
    warehouse.command(
        "CREATE TABLE {db}.kinds (k String, dwell Map(String, Float64), fee Nullable(Decimal(12, 2)), "
        "direction Enum8('entry' = 1, 'exit' = 2), zones Array(String), at DateTime64(6, 'UTC'), day Date, "
        "flag Bool, n UInt32, tier LowCardinality(String), note Nullable(String)) ENGINE = MergeTree ORDER BY k"
    )
    at = dt.datetime(2026, 11, 21, 4, 5, 6, 789012, tzinfo=dt.UTC)
    sent = [
        ("a", {"L1": 12.5, "L2": 0.25}, Decimal("15.50"), "entry", [], at, at.date(), True, 7, "vip", None),
        ("b", {}, None, "exit", ["L1", "L2"], at, at.date(), False, 0, "gold", "late"),
    ]
    warehouse.insert(
        "kinds", sent, ("k", "dwell", "fee", "direction", "zones", "at", "day", "flag", "n", "tier", "note")
    )
    _, stored = warehouse.query("SELECT * FROM {db}.kinds ORDER BY k")
    # the client reads UTC columns back as naive datetimes
    assert [tuple(row) for row in stored] == [(*row[:5], at.replace(tzinfo=None), *row[6:]) for row in sent]
    with pytest.raises(ValueError, match="no Arrow type for the ClickHouse type Point"):
        arrow_type("Point")
