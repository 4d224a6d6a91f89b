"""Which member a receipt belongs to, so it reaches the partition that owns that member.

A return made without the card still belongs to the member of the original sale:
the router keeps ``sale txn_id -> member_id`` for every sale with a card, keyed
like the receipts themselves (by the sale's txn_id), and fills the member in.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from ..records import PosTransaction
from .malls import MallDirectory

ANONYMOUS_PREFIX = "store:"


class Routed(NamedTuple):
    """The receipt as it travels on, the key it travels under, and an owner to remember."""

    txn: PosTransaction
    key: str
    remember_owner: str | None


def route_receipt(txn: PosTransaction, owner_of_original: str | None, malls: MallDirectory) -> Routed:
    """Stamp mall and member on a receipt and choose its member key.

    Receipts without any member travel under ``store:<store_id>`` so a store's
    anonymous sales stay together (they matter for conversion, not for cards).
    A receipt the config cannot place in a mall raises InvalidEvent.
    """
    txn = malls.stamped(txn)
    member_id = txn.member_id or (owner_of_original if txn.kind != "sale" else None)
    if member_id != txn.member_id:
        txn = msgspec.structs.replace(txn, member_id=member_id)
    remember = member_id if txn.kind == "sale" and member_id else None
    return Routed(txn, member_id or f"{ANONYMOUS_PREFIX}{txn.store_id}", remember)
