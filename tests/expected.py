"""Expected ledger figures for a replay file, computed here from the file alone.

Deliberately independent of the hub's code: plain json with Decimal, the points
rule written out again from its definition.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path

RATES = {"SB01": Decimal("0.5")}  # as in config/mall.example.yaml; others earn 1 per unit


def expected_ledger(path: Path) -> dict:
    owner: dict[str, str] = {}
    earned_by_sale: dict[str, int] = {}
    members: Counter = Counter()
    earned_by_store: Counter = Counter()
    reversed_by_store: Counter = Counter()
    entries = 0
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line, parse_float=Decimal, parse_int=Decimal)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("type") != "pos_transaction":
            continue
        if "total" not in event or event["total"].as_tuple().exponent < -2:
            continue  # the hub refuses these (dead letters)
        points = math.floor(event["total"] * RATES.get(event["store_id"], Decimal(1)))
        if event["kind"] == "sale":
            if event["member_id"] is None:
                continue
            owner[event["txn_id"]] = event["member_id"]
            earned_by_sale[event["txn_id"]] = points
            members[event["member_id"]] += points
            earned_by_store[event["store_id"]] += points
        else:
            member = event["member_id"] or owner.get(event["original_txn_id"])
            if member is None:
                continue
            taken = min(points, earned_by_sale.get(event["original_txn_id"], points))
            members[member] -= taken
            reversed_by_store[event["store_id"]] += taken
        entries += 1
    return {
        "entries": entries,
        "points_by_member": dict(members),
        "earned_by_store": dict(earned_by_store),
        "reversed_by_store": dict(reversed_by_store),
    }
