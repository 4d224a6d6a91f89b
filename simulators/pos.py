"""Simulated tills: a mall day of receipts, as POS systems publish them.

Deterministic for a given seed, so a test can compute the expected totals on
its own from the same file the hub consumes.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from mallstream.streams.records import PosLine, PosTransaction, Tender

CATALOGUE = (
    ("cosmetics", ("Lancome", "Estee Lauder", "Shiseido"), (Decimal("129.00"), Decimal("980.00"))),
    ("clothing", ("Uniqlo", "Zara", "Ochirly"), (Decimal("59.90"), Decimal("1299.00"))),
    ("shoes", ("Nike", "Adidas", "Belle"), (Decimal("199.00"), Decimal("1599.00"))),
    ("food", ("Starbucks", "Haagen-Dazs", "Wagas"), (Decimal("18.50"), Decimal("168.00"))),
    ("electronics", ("Apple", "Huawei", "Xiaomi"), (Decimal("99.00"), Decimal("8999.00"))),
)


@dataclass(frozen=True)
class PosDay:
    """What a simulated day looks like."""

    stores: tuple[str, ...]
    members: int = 1000
    member_share: float = 1.0
    return_share: float = 0.05
    anonymous_return_share: float = 0.5
    day: dt.date = dt.date(2026, 11, 21)
    timezone: str = "Asia/Shanghai"
    seed: int = 7


def _price(rng: random.Random, low: Decimal, high: Decimal) -> Decimal:
    cents = rng.randint(int(low * 100), int(high * 100))
    return Decimal(cents) / 100


def receipts(day: PosDay, count: int) -> Iterator[PosTransaction]:
    """``count`` receipts over opening hours (10:00-22:00), returns referring to earlier sales."""
    rng = random.Random(day.seed)
    tz = ZoneInfo(day.timezone)
    opening = dt.datetime.combine(day.day, dt.time(10), tz)
    step = dt.timedelta(hours=12) / max(count, 1)
    sales: list[PosTransaction] = []
    for seq in range(count):
        ts = opening + step * seq
        store = rng.choice(day.stores)
        till = f"{store}-T{rng.randint(1, 3)}"
        txn_id = f"{day.day:%Y%m%d}-{seq:07d}"
        if sales and rng.random() < day.return_share:
            original = rng.choice(sales)
            line = original.lines[0]
            member = None if rng.random() < day.anonymous_return_share else original.member_id
            yield PosTransaction(
                txn_id=txn_id,
                store_id=original.store_id,
                workstation_id=till,
                seq=seq,
                ts=ts,
                business_day=day.day,
                kind="return",
                total=line.amount,
                lines=[line],
                tenders=[Tender(type="refund", amount=line.amount)],
                member_id=member,
                original_txn_id=original.txn_id,
            )
            continue
        lines = []
        for _ in range(rng.randint(1, 3)):
            category, brands, (low, high) = rng.choice(CATALOGUE)
            qty = rng.randint(1, 2)
            unit = _price(rng, low, high)
            brand = rng.choice(brands)
            lines.append(
                PosLine(
                    sku=f"{brand[:3].upper()}-{rng.randint(100, 999)}",
                    qty=Decimal(qty),
                    unit_price=unit,
                    amount=unit * qty,
                    category=category,
                    brand=brand,
                    supplier=f"{brand} China",
                )
            )
        total = sum((line.amount for line in lines), Decimal(0))
        member = f"M{rng.randint(1, day.members):06d}" if rng.random() < day.member_share else None
        sale = PosTransaction(
            txn_id=txn_id,
            store_id=store,
            workstation_id=till,
            seq=seq,
            ts=ts,
            business_day=day.day,
            kind="sale",
            total=total,
            lines=lines,
            tenders=[Tender(type="bank_card", amount=total)],
            member_id=member,
        )
        sales.append(sale)
        yield sale
