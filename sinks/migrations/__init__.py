"""The ClickHouse schema as ordered migrations, one module each, and the runner that applies them.

A migration is the ``MIGRATION`` of a module ``v<version>_<what>.py``. Append only: a database
records the versions it has, so a released migration never changes and a new one is a new module
with the next version.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .base import Migration

if TYPE_CHECKING:
    from ..warehouse import Warehouse


def _discovered() -> tuple[Migration, ...]:
    """Every migration module's migration by version; versions count up from 1, none skipped or repeated."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        numbered = re.fullmatch(r"v(\d{3})_\w+", module.name)
        if numbered:
            migration: Migration = importlib.import_module(f"{__name__}.{module.name}").MIGRATION
            if migration.version != int(numbered[1]):
                raise ImportError(f"{module.name} holds migration {migration.version}")
            found.append(migration)
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise ImportError(f"migration versions {versions} skip or repeat one")
    return tuple(found)


MIGRATIONS = _discovered()


def apply_migrations(warehouse: Warehouse, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Create or upgrade the schema with the migrations the database has not recorded; their versions, in order."""
    warehouse.command("CREATE DATABASE IF NOT EXISTS {db}")
    warehouse.command(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, description String, "
        "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
    )
    _, rows = warehouse.query("SELECT version FROM {db}.schema_migrations")
    done = {row[0] for row in rows}
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in migration.statements:
            warehouse.command(statement)
        warehouse.command(
            f"INSERT INTO {{db}}.schema_migrations (version, description) "
            f"VALUES ({migration.version}, '{migration.description}')"
        )
        applied.append(migration.version)
    return applied
