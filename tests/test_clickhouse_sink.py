"""The ClickHouse sink against the real engine, embedded (chdb) and as a server over HTTP:
batching, redelivery, replays, view repair."""

import datetime as dt

import pytest

from mallstream.settings import ClickHouse
from mallstream.sinks.clickhouse import SourcePosition, TableSink
from mallstream.sinks.warehouse import open_warehouse
from mallstream.sinks.schema import LEDGER_TABLE
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


def row(i: int, delta: int = 10, store: str = "S1") -> tuple:
    cause = "points_earned" if delta > 0 else "points_reversed"
    return LEDGER_TABLE.row(LedgerEntry(
        entry_id=f"t{i}:{cause}:earn-base:points", mall_id="mall", member_id=f"M{i % 3}", account="points",
        delta=delta, balance_after=delta, cause=cause, txn_id=f"t{i}", store_id=store, ts=TS, business_day=TS.date(),
        rule_id="earn-base", rule_version="1-test"))


def totals(warehouse) -> tuple:
    _, ledger = warehouse.query("SELECT count(), sum(delta) FROM {db}.ledger_entries")
    _, rollup = warehouse.query("SELECT sum(earned), sum(reversed), sum(entries) FROM {db}.points_daily")
    return ledger[0], rollup[0]


def feed(sink, rows, start_offset=0):
    acked = []
    for i, r in enumerate(rows):
        sink.add(r, SourcePosition("ledger", 0, start_offset + i), lambda i=i: acked.append(i))
    return acked


def test_rows_are_acknowledged_only_after_they_are_stored(sink, warehouse):
    acked = feed(sink, [row(1), row(2)])
    assert not sink.due and acked == []
    sink.add(row(3), SourcePosition("ledger", 0, 2), lambda: acked.append(2))
    assert sink.due
    assert sink.flush() == 3 and acked == [0, 1, 2]
    assert totals(warehouse) == ((3, 30), (30, 0, 3))


def test_redelivered_and_replayed_rows_are_not_counted_twice(sink, warehouse):
    feed(sink, [row(1), row(2), row(1)])  # a duplicate inside one batch
    sink.flush()
    acked = feed(sink, [row(1), row(2), row(3, delta=-4)], start_offset=3)  # a redelivery plus one new row
    assert sink.flush() == 1 and acked == [0, 1, 2]
    assert sink.stats.rows_skipped == 3
    assert totals(warehouse) == ((3, 16), (20, 4, 3))


def test_repair_fills_a_view_that_missed_a_batch_and_changes_nothing_else(sink, warehouse):
    feed(sink, [row(1), row(2), row(3)])
    sink.flush()
    # a crash between the table insert and the view insert: the view misses the next batch
    warehouse.command("DETACH TABLE {db}.points_daily_mv")
    feed(sink, [row(4), row(5), row(6)], start_offset=3)
    sink.flush()
    warehouse.command("ATTACH TABLE {db}.points_daily_mv")
    assert totals(warehouse) == ((6, 60), (30, 0, 3))
    assert len(sink.repair()) == 2
    assert totals(warehouse) == ((6, 60), (60, 0, 6))
    sink.repair()
    assert totals(warehouse) == ((6, 60), (60, 0, 6))


def test_migrations_are_recorded_and_run_once(warehouse):
    assert warehouse.migrate() == []
    _, rows = warehouse.query("SELECT count() FROM {db}.schema_migrations")
    assert rows[0][0] >= 1


def test_repair_finds_a_crashed_workers_batch_behind_other_workers_newer_ones(sink, warehouse):
    crashed = TableSink(warehouse, LEDGER_TABLE.name, LEDGER_TABLE.columns, batch_rows=3, worker_tag="host-a")
    busy = TableSink(warehouse, LEDGER_TABLE.name, LEDGER_TABLE.columns, batch_rows=3, worker_tag="host-b")
    warehouse.command("DETACH TABLE {db}.points_daily_mv")
    feed(crashed, [row(1), row(2), row(3)])
    crashed.flush()
    warehouse.command("ATTACH TABLE {db}.points_daily_mv")
    for start in (10, 20, 30, 40):
        feed(busy, [row(start), row(start + 1), row(start + 2)], start_offset=start)
        busy.flush()
    assert totals(warehouse) == ((15, 150), (120, 0, 12))
    crashed.repair()
    assert totals(warehouse) == ((15, 150), (150, 0, 15))
