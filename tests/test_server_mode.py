"""What only server mode has: clickhouse-connect over HTTP to the real engine (chdb behind tests/chdb_http.py).

The sink's behaviour in both modes is tested in test_clickhouse_sink.py."""

import re

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from mallstream.sinks.clickhouse import SOURCE_COLUMNS
from mallstream.sinks.migrations import MIGRATIONS
from mallstream.sinks.tables import LEDGER_TABLE
from mallstream.sinks.warehouse import open_warehouse
from tests.test_clickhouse_sink import TS, feed, row, totals


@pytest.fixture(scope="module")
def warehouse(server):
    wh = open_warehouse(server)
    wh.migrate()
    yield wh
    wh.close()


def test_migrate_creates_the_schema_once(server):
    wh = open_warehouse(server.model_copy(update={"database": "fresh"}))
    try:
        every = [migration.version for migration in MIGRATIONS]
        assert wh.migrate() == every
        assert wh.migrate() == []
        _, tables = wh.query("SELECT name, engine FROM system.tables WHERE database = 'fresh' ORDER BY name")
        engines = dict(tables)
        declared = {
            name
            for migration in MIGRATIONS
            for statement in migration.statements
            for name in re.findall(r"CREATE (?:TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS \{+db\}+\.(\w+)", statement)
        }
        assert set(engines) == declared | {"schema_migrations"}
        assert (engines["ledger_entries"], engines["points_daily"], engines["points_daily_mv"]) == (
            "MergeTree",
            "SummingMergeTree",
            "MaterializedView",
        )
        assert engines["vip_visits"] == engines["places"] == "ReplacingMergeTree"
        _, versions = wh.query("SELECT version, description FROM {db}.schema_migrations")
        assert sorted(v for v, _ in versions) == every
    finally:
        wh.close()


def test_the_batch_token_reaches_the_server_and_dedups_table_and_view(sink, warehouse):
    """The sink's key check would hide a lost setting, so insert directly: same token once, new token again."""
    rows = [(*row(i), "ledger", 0, i, "b1", TS) for i in (1, 2)]
    columns = (*LEDGER_TABLE.columns, *SOURCE_COLUMNS)
    warehouse.insert("ledger_entries", rows, columns, token="b1")
    warehouse.insert("ledger_entries", rows, columns, token="b1")
    assert totals(warehouse) == ((2, 20), (20, 0, 2))
    warehouse.insert("ledger_entries", rows, columns, token="b2")
    assert totals(warehouse) == ((4, 40), (40, 0, 4))


def test_raw_returns_the_engines_text_and_parameters_are_bound(sink, warehouse):
    feed(sink, [row(1), row(2, delta=-3, store="S2"), row(3)])
    text = warehouse.raw(
        "SELECT entry_id, delta, store_id FROM {db}.ledger_entries ORDER BY entry_id", "TabSeparatedWithNames"
    )
    assert text == (
        b"entry_id\tdelta\tstore_id\nt1:points_earned:earn-base:points\t10\tS1\n"
        b"t2:points_reversed:earn-base:points\t-3\tS2\nt3:points_earned:earn-base:points\t10\tS1\n"
    )
    _, rows = warehouse.query(
        "SELECT count(), sum(delta) FROM {db}.ledger_entries WHERE store_id = {store:String}", {"store": "S2"}
    )
    assert rows == [(1, -3)]


def test_a_bad_query_raises_and_the_server_keeps_serving(warehouse):
    with pytest.raises(DatabaseError, match="Code: 62") as syntax:
        warehouse.query("SELEC 1")
    assert syntax.value.code == 62
    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        warehouse.command("INSERT INTO {db}.no_such_table VALUES (1)")
    _, rows = warehouse.query("SELECT 1 + 1")
    assert rows == [(2,)]
