"""What a migration is, and the parts of a table every sunk table shares.

Each sunk table carries where its rows came from (``_topic``, ``_partition``,
``_offset``) and the insert batch that wrote them (``_batch``), which is also the
insert-deduplication token: re-running a batch after a crash mid-insert fills in
a view that missed it, and changes nothing that already has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``version`` is recorded in ``schema_migrations`` once all ``statements`` ran.

    ``{db}`` in a statement is the configured database. A migration cut short runs again from its
    start, so every statement must be safe to repeat.
    """

    version: int
    description: str
    statements: Sequence[str]


#: Kept on every table that takes sink inserts or view inserts, so a repeated
#: batch token is recognised (ClickHouse keeps that many recent block hashes).
DEDUP = "SETTINGS non_replicated_deduplication_window = 1000"

SINK_COLUMNS = """
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64,
    _batch String,
    _sunk_at DateTime64(3, 'UTC')"""
