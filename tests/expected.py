"""Expected member balances for a replay file, computed here from the file alone.

Deliberately independent of the hub's code: plain json with Decimal, and the rules of
`tests/rules/day.yaml`, written out again from their
definition in docs/loyalty.md:

- points: 1 per currency unit, rounded down per receipt; the food court (SB01) earns half,
  its reduction rounded toward zero;
- a return reverses the sale's points in proportion to what is returned, cumulative,
  rounded half up;
- cosmetics "spend 300 in one receipt, get a 100 voucher", clothing "spend 500, get 200"; a return claws a voucher back in proportion to the
  in-scope spend returned, cumulative, half up (nothing is spent by voucher here).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path

HALF_RATE_STORES = {"SB01"}
#: campaign -> (category, threshold, reward in cents, limit per member per day)
CAMPAIGNS = {
    "cosmetics-300-100": ("cosmetics", Decimal(300), 10_000, None),
    "clothing-500-200": ("clothing", Decimal(500), 20_000, None),
}


def _half_up(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def _cents(amount: Decimal) -> int:
    return int(amount * 100)


@dataclass
class _Sale:
    member: str
    points: int
    total: int
    returned: int = 0
    reversed: int = 0
    #: campaign -> [reward, in-scope cents that earned it, in-scope cents returned, clawed]
    vouchers: dict[str, list[int]] = field(default_factory=dict)


def _points(event: dict) -> int:
    total = event["total"]
    points = math.floor(total)
    if event["store_id"] in HALF_RATE_STORES:
        points += int((total * Decimal("-0.5")).to_integral_value(rounding=ROUND_DOWN))
    return points


def _in_scope(event: dict, category: str) -> Decimal:
    return sum((line["amount"] for line in event.get("lines", []) if line.get("category") == category), Decimal(0))


def expected_ledger(path: Path) -> dict:
    sales: dict[str, _Sale] = {}
    points: Counter = Counter()
    vouchers: Counter = Counter()
    issued_by_campaign: Counter = Counter()
    triggering_spend: Counter = Counter()
    issued_today: Counter = Counter()
    earned_by_store: Counter = Counter()
    reversed_by_store: Counter = Counter()
    receipts = 0
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line, parse_float=Decimal, parse_int=Decimal)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("type") != "pos_transaction":
            continue
        if "total" not in event or event["total"].as_tuple().exponent < -2:
            continue  # the hub refuses these (dead letters)
        if event["kind"] == "sale":
            member = event["member_id"]
            if member is None:
                continue
            sale = sales[event["txn_id"]] = _Sale(member, _points(event), _cents(event["total"]))
            points[member] += sale.points
            earned_by_store[event["store_id"]] += sale.points
            for campaign, (category, threshold, reward, limit) in CAMPAIGNS.items():
                spend = _in_scope(event, category)
                if spend < threshold or (limit is not None and issued_today[(member, campaign)] >= limit):
                    continue
                issued_today[(member, campaign)] += 1
                sale.vouchers[campaign] = [reward, _cents(spend), 0, 0]
                vouchers[member] += reward
                issued_by_campaign[campaign] += 1
                triggering_spend[campaign] += sale.total
        else:
            sale = sales.get(event["original_txn_id"])
            if sale is None:
                continue
            sale.returned = min(sale.returned + _cents(event["total"]), sale.total)
            target = _half_up(Decimal(sale.points) * sale.returned / sale.total) if sale.total else 0
            points[sale.member] -= target - sale.reversed
            reversed_by_store[event["store_id"]] += target - sale.reversed
            sale.reversed = target
            for campaign, voucher in sale.vouchers.items():
                reward, basis = voucher[0], voucher[1]
                voucher[2] = min(voucher[2] + _cents(_in_scope(event, CAMPAIGNS[campaign][0])), basis)
                share = _half_up(Decimal(reward) * voucher[2] / basis)
                vouchers[sale.member] -= share - voucher[3]
                voucher[3] = share
        receipts += 1
    return {
        "receipts": receipts,
        "points_by_member": {m: p for m, p in points.items()},
        "vouchers_by_member": {m: c for m, c in vouchers.items() if c},
        "vouchers_issued_by_campaign": dict(issued_by_campaign),
        "triggering_spend_by_campaign": dict(triggering_spend),
        "earned_by_store": {s: p for s, p in earned_by_store.items() if p},
        "reversed_by_store": {s: p for s, p in reversed_by_store.items() if p},
    }
