"""Version 11: EPCs and plates out of the tables, as keyed hashes."""

from __future__ import annotations

from .base import Migration
from .v010_parking_charges import parking_charges_view

#: A keyed hash as :class:`mallstream.privacy.Pseudonym` writes it; a mutation waits until it is done.
_HASHED = "^[0-9a-f]{32}$"
_AT_ONCE = "SETTINGS mutations_sync = 2"

MIGRATION = Migration(
    11,
    "personal identifiers out of the analytics tables: EPCs and plates stored as keyed hashes",
    [
        # new rows carry HMAC-SHA256 values (mallstream/privacy.py; the key never reaches the server)
        "ALTER TABLE {db}.rfid_reads RENAME COLUMN IF EXISTS epc TO tag_hash",
        "ALTER TABLE {db}.parking_events RENAME COLUMN IF EXISTS plate TO plate_hash",
        "DROP VIEW IF EXISTS {db}.parking_charges",  # it reads the plate column
        "ALTER TABLE {db}.parking_stays RENAME COLUMN IF EXISTS plate TO plate_hash",
        parking_charges_view("plate_hash"),
        # rows written before hold EPCs and plates as they are (a stay's row id names its plate, an event
        # without an id of its own is known by a hash of its content): they cannot be hashed here without
        # the key in SQL, and the server's query log, so they lose them
        f"""ALTER TABLE {{db}}.rfid_reads UPDATE tag_hash = '', event_id = ''
            WHERE NOT match(tag_hash, '{_HASHED}') {_AT_ONCE}""",
        f"""ALTER TABLE {{db}}.parking_events UPDATE plate_hash = '', event_id = ''
            WHERE NOT match(plate_hash, '{_HASHED}') {_AT_ONCE}""",
        f"""ALTER TABLE {{db}}.parking_stays UPDATE plate_hash = '', row_id = ''
            WHERE NOT match(plate_hash, '{_HASHED}') {_AT_ONCE}""",
        # (ledger entries of members' parking written before name their stay, and so its plate, in txn_id and
        # in entry_id, the table's key, which a mutation cannot change; new ones carry the stay's keyed hash)
    ],
)
