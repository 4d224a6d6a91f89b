"""Batches split and table values paged to fit one Kafka record (streams/paging.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from mallstream.streams.paging import PAGED, MessageTooLarge, PagedTable, fitting
from mallstream.streams.records import FootfallBatch, FootfallTick, decode
from mallstream.streams.state.store import PartitionStore

TS = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)


def ticks(n: int) -> list[FootfallTick]:
    return [FootfallTick(counter_id=f"C-{i % 21}", ts=TS + dt.timedelta(hours=i), count_in=i) for i in range(n)]


def test_a_batch_that_fits_is_one_record_and_no_items_are_none():
    assert len(list(fitting(ticks(10), FootfallBatch, 65_536))) == 1
    assert list(fitting([], FootfallBatch, 65_536)) == []


def test_a_batch_over_the_limit_is_split_in_order_into_records_that_each_fit():
    items = ticks(5000)
    records = list(fitting(items, FootfallBatch, 16_384))
    assert len(records) > 1 and all(len(record) <= 16_384 for record in records)
    assert [item for record in records for item in decode(FootfallBatch, record).items] == items


def test_one_item_over_the_limit_says_so():
    with pytest.raises(MessageTooLarge, match="over the 50-byte limit"):
        list(fitting(ticks(1), FootfallBatch, 50))


class Table(dict):
    """A faust table as the agents use it: get, set and delete by bytes key."""


def test_a_small_value_is_stored_as_it_is_and_a_large_one_as_pages_that_read_back_whole():
    table = Table()
    paged = PagedTable(table, page_bytes=100)
    paged[b"mall"] = b"small"
    assert table == {b"mall": b"small"} and paged.get(b"mall") == b"small"
    value = bytes(range(256)) * 3
    paged[b"mall"] = value
    assert paged.get(b"mall") == value
    assert table[b"mall"].startswith(PAGED) and all(len(v) <= 100 for v in table.values())
    assert len(table) == 1 + 8


def test_a_value_that_shrinks_leaves_no_pages_behind():
    table = Table()
    paged = PagedTable(table, page_bytes=100)
    paged[b"mall"] = b"x" * 1000
    paged[b"mall"] = b"y" * 250
    assert len(table) == 1 + 3 and paged.get(b"mall") == b"y" * 250
    paged[b"mall"] = b"z"
    assert table == {b"mall": b"z"}


def test_a_crash_before_the_header_switches_leaves_the_old_value_whole():
    """The new value's pages go under a new generation; until the header names them, the old value reads."""

    class Crashing(Table):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            if key == b"mall" and value.startswith(PAGED) and b"mall" in self:
                raise RuntimeError("killed between the pages and the header")
            super().__setitem__(key, value)

    table = Crashing()
    paged = PagedTable(table, page_bytes=100)
    paged[b"mall"] = b"a" * 500
    with pytest.raises(RuntimeError):
        paged[b"mall"] = b"b" * 700
    assert PagedTable(table, page_bytes=100).get(b"mall") == b"a" * 500


def test_keys_are_the_values_keys_never_a_page(tmp_path):
    """Over a lane's store, as the agents page their state: walking the table, or its keys, gives the values' keys."""
    store = PartitionStore(tmp_path / "0.sqlite3")
    store.open()
    paged = PagedTable(store, page_bytes=100)
    paged[b"M1"] = b"a" * 450
    paged[b"M2"] = b"b"
    assert sorted(paged.keys()) == sorted(paged) == [b"M1", b"M2"] and len(store) == 2 + 5
    assert sorted(store) == sorted(store.keys()) and len(list(store)) == 7


def test_a_card_is_stored_deflated_and_one_stored_before_reads_as_it_was():
    import msgspec

    from mallstream.streams.core.accounts import MemberCard
    from mallstream.streams.loyalty_agents import decode_card, encode_card

    card = MemberCard(member_id="M1", tier="gold", points=1200, stored_value=5_000)
    assert decode_card(encode_card(card)) == card
    assert decode_card(msgspec.msgpack.encode(card)) == card  # written by a worker before compression
