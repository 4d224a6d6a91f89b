"""The loyalty agent: each receipt against the member's card, by the rule engine.

    pos.by_member --apply_loyalty (cards table)--> ledger --sink--> ClickHouse ledger_entries
                                                \\-> loyalty.rejects (refused receipts, with reasons)

The card lives in a faust table keyed by member; the engine (``streams/core/engine.py``)
is pure and returns the new card and its effects. Every effect becomes a ledger entry
naming its cause, rule and rule version; refused receipts also go to ``loyalty.rejects``.
The rule file is re-read when it changes: entries carry the version that made them, and
a broken edit leaves the previous rules in force (logged once).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import TYPE_CHECKING

import faust
import msgspec

from . import topics
from .core.accounts import Effect, MemberCard
from .core.engine import REFUSALS, evaluate
from .core.rules import RuleFile
from .records import LedgerEntry, PosTransaction, decode, encode

if TYPE_CHECKING:
    from .app import Hub

log = logging.getLogger(__name__)

_card_encoder = msgspec.msgpack.Encoder()
_card_decoder = msgspec.msgpack.Decoder(MemberCard)


def encode_card(card: MemberCard) -> bytes:
    return _card_encoder.encode(card)


def decode_card(data: bytes) -> MemberCard:
    return _card_decoder.decode(data)


def _entry_id(effect: Effect) -> str:
    """Cause, kind, rule and account (or voucher): one effect, one id, at most 128 characters."""
    full = ":".join((effect.cause, effect.kind, effect.rule_id, effect.account or effect.voucher_id))
    if len(full) <= 128:
        return full
    return f"{effect.cause[:64]}:{hashlib.blake2b(full.encode(), digest_size=16).hexdigest()}"


def ledger_entries(card: MemberCard, txn: PosTransaction, effects: list[Effect]) -> list[LedgerEntry]:
    """The effects of one receipt as ledger entries; ids derive from cause, kind, account and rule."""
    balances = {"points": card.points, "stored_value": card.stored_value}
    balances |= {f"voucher:{vid}": voucher.remaining for vid, voucher in card.vouchers.items()}
    return [
        LedgerEntry(
            entry_id=_entry_id(effect),
            mall_id=txn.mall_id or "", member_id=card.member_id, account=effect.account, delta=effect.delta,
            balance_after=balances.get(effect.account, 0), cause=effect.kind, txn_id=effect.cause,
            store_id=txn.store_id, ts=txn.ts, business_day=txn.business_day, replayed=effect.replayed,
            rule_id=effect.rule_id, rule_version=effect.rule_version, amount=effect.amount,
            voucher_id=effect.voucher_id, reason=effect.reason, by=effect.by,
        )
        for effect in effects
    ]


#: How many of the latest effects the member view lists.
RECENT_ENTRIES = 20


def member_view(card: MemberCard, now: dt.datetime) -> dict:
    """Member 360: balances per account, vouchers with scope and validity, tier, status and the latest entries."""
    recent = [effect for memory in list(card.txns.values())[-RECENT_ENTRIES:] for effect in memory.effects]
    return {
        "member_id": card.member_id,
        "tier": card.tier,
        "status": card.status,
        "birthday": card.birthday.isoformat() if card.birthday else None,
        "balances": {"points": card.points, "stored_value_cents": card.stored_value},
        "vouchers": [
            {"voucher_id": voucher.voucher_id, "campaign_id": voucher.campaign_id, "amount_cents": voucher.amount,
             "remaining_cents": voucher.remaining, "scope": msgspec.to_builtins(voucher.scope),
             "valid_from": voucher.valid_from.isoformat(), "valid_to": voucher.valid_to.isoformat(),
             "usable_now": voucher.usable_at(now) and voucher.remaining > 0}
            for voucher in card.vouchers.values()
        ],
        "holds": [msgspec.to_builtins(hold) for hold in card.holds.values()],
        "receipts": len(card.txns),
        "recent_entries": msgspec.to_builtins(recent[-RECENT_ENTRIES:]),
    }


class LoyaltyAgent:
    """Cards in a table, the rule file, and the agent applying receipts."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        conf = hub.settings
        self.rules = RuleFile(conf.resolve(conf.rules.file))
        self.rules.current()  # a rule file that was never good stops the worker at start
        self._reported_error: str | None = None
        self.cards = hub.app.Table("cards", partitions=conf.kafka.partitions, key_type=bytes, value_type=bytes)
        hub.app.agent(hub.topic(topics.POS_BY_MEMBER), name="apply_loyalty")(self._apply)

    def card(self, member_id: str) -> MemberCard | None:
        stored = self.cards.get(member_id.encode())
        return decode_card(stored) if stored else None

    def _rule_book(self):
        book = self.rules.current()
        error = str(self.rules.error) if self.rules.error else None
        if error and error != self._reported_error:
            log.error("rule file edit refused, version %s stays in force: %s", book.tag, error)
        self._reported_error = error
        return book

    async def _apply(self, stream: faust.StreamT) -> None:
        ledger, rejects = self.hub.topic(topics.LEDGER), self.hub.topic(topics.LOYALTY_REJECTS)
        counters = self.hub.counters
        async for event in stream.events():
            async with self.hub.dead_letter_on_failure(event, "loyalty"):
                txn = decode(PosTransaction, event.value)
                if txn.member_id is None:
                    counters["receipts_anonymous"] += 1
                    continue
                key = event.key
                stored = self.cards.get(key)
                card, effects = evaluate(decode_card(stored) if stored else None, txn, self._rule_book(),
                                         dt.datetime.now(dt.UTC))
                if not effects or not all(effect.replayed for effect in effects):
                    self.cards[key] = encode_card(card)
                for entry in ledger_entries(card, txn, effects):
                    await ledger.send(key=key, value=encode(entry))
                    if entry.cause in REFUSALS:
                        await rejects.send(key=key, value=encode(entry))
                counters["receipts_rejected" if any(e.kind == "rejected" for e in effects) else "receipts_applied"] += 1
