"""The router's sale owners: a window of sales as long as returns are accepted, forgotten partition by partition."""

from __future__ import annotations

import datetime as dt

from mallstream.streams.sale_owners import SaleOwners
from mallstream.streams.topics import partition_of

DAY = dt.date(2025, 1, 1)
PARTITIONS = 4


def sales_in(partition: int, count: int) -> list[bytes]:
    keys = (f"S101-T1-{n:06d}".encode() for n in range(10_000))
    return [key for key in keys if partition_of(key, PARTITIONS) == partition][:count]


def test_owners_older_than_the_window_are_forgotten_and_the_table_stays_bounded_over_a_long_history():
    tables: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
    owners, table = SaleOwners(tables.__getitem__), tables[0]
    sales = sales_in(0, 600)
    for n, sale in enumerate(sales):  # a sale a day for 600 days, a 30-day window
        day = DAY + dt.timedelta(days=n)
        owners.remember(sale, f"M{n}", day, 0)
        owners.forget_before(day - dt.timedelta(days=30), 0)
        assert len(table) <= 31
    assert owners.owner(sales[-1], 0) == "M599" and owners.owner(sales[-30], 0) == "M570"
    assert owners.owner(sales[-32], 0) is None


def test_a_partition_forgets_only_its_own_sales():
    tables: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
    owners = SaleOwners(tables.__getitem__)
    mine, theirs = sales_in(0, 1)[0], sales_in(1, 1)[0]
    owners.remember(mine, "M1", DAY, 0)
    owners.remember(theirs, "M2", DAY, 1)
    assert owners.forget_before(DAY + dt.timedelta(days=1), 0) == 1
    assert owners.owner(theirs, 1) == "M2" and owners.owner(mine, 0) is None


def test_after_a_restart_the_order_is_read_back_from_the_table_and_old_values_go_first():
    tables: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
    table = tables[2]
    old, recent = sales_in(2, 2)
    table[old] = b"M-old"  # as stored before the window was kept
    SaleOwners(tables.__getitem__).remember(recent, "M-new", DAY + dt.timedelta(days=100), 2)
    restarted = SaleOwners(tables.__getitem__)
    assert restarted.forget_before(DAY, 2) == 1
    assert table == {recent: b"M-new\x00%d" % (DAY + dt.timedelta(days=100)).toordinal()}
