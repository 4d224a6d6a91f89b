"""ARTS/NRF POSLog (IXRetail XML) to receipts.

A POSLog document holds many ``Transaction`` elements from tills of one or more
stores. Retail transactions become :class:`PosTransaction` records; control
transactions (sign-on, till loans...) carry no money and are skipped, but their
SequenceNumber still counts: the sequence runs per workstation over all
transactions, so a gap means transactions were lost on the way.

Vendors extend POSLog in their own namespaces (NCR ACS puts the loyalty id in
``acs:LoyaltyMembership/acs:LoyaltyID``), so elements are matched by local name.

POSLog amounts of returns and post-voids are negative; the hub's are positive
with ``kind`` return or void. Transaction-level discounts, rewards and tax make
the grand total differ from the sum of item amounts; the difference is spread
over the lines in proportion to their amounts, to the cent, so each line says
what the customer paid for it and the lines add up to the total.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import NamedTuple
from urllib.parse import quote
from xml.etree.ElementTree import Element, tostring

from mallstream.streams.records import InvalidEvent, PosLine, PosTransaction, Tender, decode, encode

from .normalise import Decoded, Reject, SequenceGap
from .xml import local_name, parse_xml

CENT = Decimal("0.01")
LOYALTY_ID_ELEMENTS = ("LoyaltyID", "LoyaltyAccountID")


@dataclass(frozen=True, slots=True)
class PosLogState:
    """The last SequenceNumber seen per (store, workstation)."""

    last_seq: Mapping[tuple[str, str], int] = field(default_factory=dict)


class TransactionKey(NamedTuple):
    """What identifies a POSLog transaction, in the header of its own and of a TransactionLink to it."""

    store_id: str
    workstation_id: str
    business_day: dt.date
    seq: int

    @property
    def txn_id(self) -> str:
        """Deterministic and unique: the parts are escaped, so no two keys give the same id."""
        return ":".join(quote(str(part), safe="") for part in self)


def decode_poslog(
    state: PosLogState, document: bytes, store_tz: dt.tzinfo
) -> tuple[PosLogState, Decoded, list[SequenceGap]]:
    """All transactions of one POSLog document, or of a bare ``Transaction``.

    Times without a zone (the usual case) are the store's local time, ``store_tz``.
    A transaction that cannot be read or fails validation is a reject with its
    reason and its XML (re-serialised); the others still go through.
    """
    try:
        root = parse_xml(document)
    except ValueError as exc:
        return state, Decoded(rejects=[Reject(f"not well-formed or unsafe XML: {exc}", document)]), []
    if local_name(root.tag) == "Transaction":
        transactions = [root]
    elif local_name(root.tag) == "POSLog":
        transactions = _children(root, "Transaction")
    else:
        reason = f"not a POSLog document: root is {local_name(root.tag)!r}"
        return state, Decoded(rejects=[Reject(reason, document)]), []

    last_seq, decoded, gaps = dict(state.last_seq), Decoded(), []
    for transaction in transactions:
        try:
            key = _key(transaction)
            previous = last_seq.get((key.store_id, key.workstation_id))
            if previous is not None and key.seq > previous + 1:
                gaps.append(SequenceGap(f"poslog:{key.store_id}:{key.workstation_id}", previous + 1, key.seq - 1))
            last_seq[(key.store_id, key.workstation_id)] = key.seq
            retail = _child(transaction, "RetailTransaction")
            if retail is not None and not _cancelled(transaction, retail):
                decoded.events.append(_receipt(key, transaction, retail, store_tz))
        except (InvalidEvent, ValueError, ArithmeticError) as exc:
            decoded.rejects.append(Reject(str(exc) or type(exc).__name__, tostring(transaction)))
    return PosLogState(last_seq), decoded, gaps


def _children(parent: Element, name: str) -> list[Element]:
    return [child for child in parent if local_name(child.tag) == name]


def _child(parent: Element, name: str) -> Element | None:
    return next(iter(_children(parent, name)), None)


def _descendant(parent: Element, *names: str) -> Element | None:
    return next((element for element in parent.iter() if local_name(element.tag) in names), None)


def _text(parent: Element, name: str) -> str:
    child = _child(parent, name)
    if child is None or not (child.text or "").strip():
        raise ValueError(f"{local_name(parent.tag)} has no {name}")
    return child.text.strip()


def _amount(parent: Element, *names: str, default: str | None = None) -> Decimal:
    """The first of ``names`` present, as an exact decimal."""
    for name in names:
        child = _child(parent, name)
        if child is not None:
            return _parse_decimal(child)
    if default is None:
        raise ValueError(f"{local_name(parent.tag)} has no {' or '.join(names)}")
    return Decimal(default)


def _parse_decimal(element: Element) -> Decimal:
    text = (element.text or "").strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ValueError(f"{local_name(element.tag)} {text!r} is not a number")
    return value


def _optional_text(element: Element | None) -> str | None:
    return (element.text or "").strip() or None if element is not None else None


def _key(element: Element) -> TransactionKey:
    seq = _text(element, "SequenceNumber")
    try:
        return TransactionKey(
            _text(element, "RetailStoreID"),
            _text(element, "WorkstationID"),
            dt.date.fromisoformat(_text(element, "BusinessDayDate")),
            int(seq),
        )
    except ValueError as exc:
        raise ValueError(f"bad transaction key: {exc}") from None


def _cancelled(transaction: Element, retail: Element) -> bool:
    """A basket abandoned before payment: no money moved, so no receipt."""
    flags = (transaction.get("CancelFlag"), retail.get("CancelFlag"))
    return "true" in flags or retail.get("TransactionStatus") in ("Voided", "Canceled", "Cancelled")


def _receipt(key: TransactionKey, transaction: Element, retail: Element, store_tz: dt.tzinfo) -> PosTransaction:
    ts = dt.datetime.fromisoformat(_text(transaction, "EndDateTime"))
    ts = (ts if ts.tzinfo else ts.replace(tzinfo=store_tz)).astimezone(dt.UTC)
    grand_totals = [total for total in _children(retail, "Total") if total.get("TotalType") == "TransactionGrandAmount"]
    if not grand_totals:
        raise ValueError("RetailTransaction has no TransactionGrandAmount total")
    grand = _parse_decimal(grand_totals[0])
    link = _descendant(retail, "TransactionLink")
    kind = (
        "void"
        if link is not None and "void" in (link.get("ReasonCode") or "").lower()
        else "return"
        if grand < 0
        else "sale"
    )
    sign = -1 if grand < 0 else 1

    lines, tenders = [], []
    for item in _children(retail, "LineItem"):
        if item.get("VoidFlag") == "true":
            continue
        for part in item:
            if local_name(part.tag) in ("Sale", "Return"):
                lines.append(_line(part, sign))
            elif local_name(part.tag) == "Tender":
                tenders.append(_tender(part, sign))
    total = sign * grand
    amounts = _spread([line.amount for line in lines], total)
    receipt = PosTransaction(
        txn_id=key.txn_id,
        store_id=key.store_id,
        workstation_id=key.workstation_id,
        seq=key.seq,
        ts=ts,
        business_day=key.business_day,
        kind=kind,
        total=total,
        lines=[
            PosLine(line.sku, line.qty, line.unit_price, amount) for line, amount in zip(lines, amounts, strict=True)
        ],
        tenders=tenders,
        member_id=_optional_text(_descendant(retail, *LOYALTY_ID_ELEMENTS)),
        original_txn_id=_key(link).txn_id if kind != "sale" and link is not None else None,
        currency=_optional_text(_child(transaction, "CurrencyCode")) or "CNY",
    )
    return decode(PosTransaction, encode(receipt))


def _line(item: Element, sign: int) -> PosLine:
    """A Sale or Return line; a Return, or a negative ExtendedAmount, is money back to the customer."""
    extended = _amount(item, "ExtendedAmount")
    amount = abs(extended) - abs(_amount(item, "ExtendedDiscountAmount", default="0"))
    refund = local_name(item.tag) == "Return" or extended < 0
    return PosLine(
        sku=_text(item, "ItemID"),
        qty=abs(_amount(item, "Quantity", default="1")),
        unit_price=abs(_amount(item, "RegularSalesUnitPrice", "ActualSalesUnitPrice")),
        amount=sign * (-amount if refund else amount),
    )


def _tender(tender: Element, sign: int) -> Tender:
    """What one tender paid, net of change given back."""
    change = _child(tender, "TenderChange")
    amount = _amount(tender, "Amount") - (_amount(change, "Amount") if change is not None else 0)
    if tender.get("TypeCode") == "Refund" and amount > 0:
        amount = -amount
    return Tender(type=tender.get("TenderType") or "unknown", amount=sign * amount)


def _spread(amounts: list[Decimal], total: Decimal) -> list[Decimal]:
    """Line amounts adjusted in proportion so they add up to ``total``, to the cent (largest remainder).

    Left alone where that is impossible (nothing to weigh by, or amounts that are
    not whole cents); validation then rejects the receipt with the reason.
    """
    base = sum(amounts, Decimal(0))
    if base == total or base == 0 or any(a != a.quantize(CENT) for a in (*amounts, total)):
        return amounts
    shares = [amount * total / base for amount in amounts]
    floors = [share.quantize(CENT, rounding=ROUND_FLOOR) for share in shares]
    left = int((total - sum(floors, Decimal(0))) / CENT)
    by_remainder = sorted(range(len(shares)), key=lambda i: shares[i] - floors[i], reverse=True)
    for i in by_remainder[:left]:
        floors[i] += CENT
    return floors
