"""The migrations, one module each, make what the single-file schema module made, on real chdb.

``tests/schema/migrations_1_to_13.json`` was recorded from ``sinks/schema.py`` as it was before the
split (commit da6b976): each migration's version, description and statements, and ``SHOW CREATE
TABLE`` of every table and view a fresh database had after them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mallstream.settings import ClickHouse
from mallstream.sinks.migrations import MIGRATIONS, apply_migrations
from mallstream.sinks.warehouse import Warehouse, open_warehouse

RECORDED = json.loads((Path(__file__).parent / "schema" / "migrations_1_to_13.json").read_text())
#: the migrations the record covers; later ones are beyond it
RECORDED_MIGRATIONS = [
    migration for migration in MIGRATIONS if migration.version <= RECORDED["migrations"][-1]["version"]
]


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    """A fresh embedded engine; the database is the one the record was made in."""
    warehouse = open_warehouse(ClickHouse(path=tmp_path / "clickhouse", database="mallstream"))
    yield warehouse
    warehouse.close()


def show_create(warehouse: Warehouse) -> dict[str, str]:
    """``SHOW CREATE TABLE`` of every table and view of the database, by name."""
    _, names = warehouse.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", {"db": warehouse.database}
    )
    created = {}
    for (name,) in names:
        _, [(statement,)] = warehouse.query(f"SHOW CREATE TABLE {{db}}.{name}")
        created[name] = statement
    return created


def recorded_versions(warehouse: Warehouse) -> list[list]:
    _, rows = warehouse.query("SELECT version, description FROM {db}.schema_migrations ORDER BY version")
    return [list(row) for row in rows]


def test_the_migration_modules_are_the_recorded_versions_in_order():
    assert [(migration.version, migration.description) for migration in RECORDED_MIGRATIONS] == [
        (migration["version"], migration["description"]) for migration in RECORDED["migrations"]
    ]


def test_a_fresh_database_gets_every_table_and_view_as_the_single_file_schema_made_it(warehouse):
    assert apply_migrations(warehouse, RECORDED_MIGRATIONS) == [version for version, _ in RECORDED["schema_migrations"]]
    created = show_create(warehouse)
    assert sorted(created) == sorted(RECORDED["tables"])
    for name, statement in RECORDED["tables"].items():
        assert created[name] == statement, name
    assert recorded_versions(warehouse) == RECORDED["schema_migrations"]


def test_a_database_the_single_file_schema_migrated_is_up_to_date(warehouse):
    """Its statements replayed as its runner ran them: the runner finds nothing to do and changes nothing."""
    warehouse.command("CREATE DATABASE IF NOT EXISTS {db}")
    warehouse.command(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, description String, "
        "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
    )
    for migration in RECORDED["migrations"]:
        for statement in migration["statements"]:
            warehouse.command(statement)
        warehouse.command(
            f"INSERT INTO {{db}}.schema_migrations (version, description) "
            f"VALUES ({migration['version']}, '{migration['description']}')"
        )
    assert apply_migrations(warehouse, RECORDED_MIGRATIONS) == []
    assert show_create(warehouse) == RECORDED["tables"]
    assert recorded_versions(warehouse) == RECORDED["schema_migrations"]
