"""Which receipt lines a rule or a voucher covers.

One definition serves the rule file (usage scopes, trigger scopes, exclusions)
and the card (each voucher keeps the scope it was issued with, so a later rule
edit never changes what an issued voucher may pay for).
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from ..records import PosLine

#: The line attributes a scope can name, with the PosLine field each one reads.
LINE_ATTRIBUTES = {"categories": "category", "brands": "brand", "suppliers": "supplier", "skus": "sku"}


class Scope(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Lines inside the scope match every dimension that lists values (AND across, OR within).

    An empty scope covers every line. ``stores`` is matched against the receipt's store.
    """

    categories: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    suppliers: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    stores: frozenset[str] = frozenset()

    def covers(self, line: PosLine, store_id: str) -> bool:
        if self.stores and store_id not in self.stores:
            return False
        for dimension, attribute in LINE_ATTRIBUTES.items():
            allowed = getattr(self, dimension)
            if allowed and getattr(line, attribute) not in allowed:
                return False
        return True

    def needed_attributes(self) -> set[str]:
        """Line attributes this scope reads: a line without one of them cannot match it."""
        return {attribute for dimension, attribute in LINE_ATTRIBUTES.items() if getattr(self, dimension)}


EVERYTHING = Scope()


def any_covers(scopes: tuple[Scope, ...] | list[Scope], line: PosLine, store_id: str) -> bool:
    return any(scope.covers(line, store_id) for scope in scopes)


def cents(amount: Decimal) -> int:
    """Currency units with at most two decimals as exact integer cents."""
    return int(amount * 100)


def spend_in(scope: Scope, lines: list[PosLine], store_id: str, excluded: tuple[Scope, ...] = ()) -> int:
    """Cents spent on the lines a scope covers, excluded lines left out."""
    return sum(
        cents(line.amount)
        for line in lines
        if scope.covers(line, store_id) and not any_covers(excluded, line, store_id)
    )
