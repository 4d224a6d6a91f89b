"""Typed records for every event on the hub's topics.

Events are JSON on the wire and carry a ``"type"`` tag, so a line in a replay
file or a message on a topic says what it is. Decoding validates: a record that
comes out of :func:`decode` is well formed, and anything else raises
:class:`InvalidEvent` with a reason fit for a dead letter.

Money is :class:`~decimal.Decimal` end to end. JSON numbers and strings are
both parsed exactly (``12.30`` never becomes a binary float) and amounts with
more than two decimal places are refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Annotated, Literal, TypeVar

import msgspec

Money = Annotated[Decimal, msgspec.Meta(description="currency units, at most 2 decimals")]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class InvalidEvent(ValueError):
    """An event that cannot be accepted; the message is the dead-letter reason."""


class Record(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False):
    """Base of all wire records: tagged, immutable, validated after decoding."""

    def validate(self) -> None:
        """Cross-field checks that msgspec's per-field constraints cannot express."""


def _require_aware(name: str, ts: dt.datetime) -> None:
    if ts.tzinfo is None:
        raise InvalidEvent(f"{name} must carry a UTC offset, e.g. 2026-11-23T10:00:00+08:00")


def _require_cents(name: str, amount: Decimal) -> None:
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise InvalidEvent(f"{name}={amount} is not an amount with at most 2 decimals")


class PosLine(msgspec.Struct, frozen=True):
    """One line of a receipt; ``amount`` is what the customer pays for it, after line discounts."""

    sku: Id
    qty: Decimal
    unit_price: Money
    amount: Money
    category: str = ""
    brand: str = ""
    supplier: str = ""


class Tender(msgspec.Struct, frozen=True):
    """One way the receipt was paid: cash, bank card, stored value, points, voucher..."""

    type: Id
    amount: Money
    reference: str = ""


class PosTransaction(Record, tag="pos_transaction"):
    """A receipt from a till. ``txn_id`` is globally unique and the idempotency key.

    Returns and voids name the sale they undo in ``original_txn_id``; amounts on a
    return are positive (what goes back to the customer).
    """

    txn_id: Id
    store_id: Id
    workstation_id: Id
    seq: Count
    ts: dt.datetime
    business_day: dt.date
    kind: Literal["sale", "return", "void"]
    total: Money
    lines: list[PosLine] = []
    tenders: list[Tender] = []
    member_id: str | None = None
    original_txn_id: str | None = None
    mall_id: str | None = None
    currency: str = "CNY"

    @property
    def sign(self) -> int:
        """+1 for a sale, -1 for a return or void: what it undoes counts against the sale."""
        return 1 if self.kind == "sale" else -1

    def validate(self) -> None:
        _require_aware("ts", self.ts)
        _require_cents("total", self.total)
        if self.total < 0:
            raise InvalidEvent("total must not be negative; returns carry positive amounts")
        for i, line in enumerate(self.lines):
            if not line.qty.is_finite() or line.qty <= 0:
                raise InvalidEvent(f"lines[{i}].qty must be a positive number")
            _require_cents(f"lines[{i}].amount", line.amount)
            _require_cents(f"lines[{i}].unit_price", line.unit_price)
        for i, tender in enumerate(self.tenders):
            _require_cents(f"tenders[{i}].amount", tender.amount)
        if self.kind in ("return", "void") and not self.original_txn_id:
            raise InvalidEvent(f"a {self.kind} needs original_txn_id")
        if self.kind == "sale" and self.original_txn_id:
            raise InvalidEvent("a sale must not carry original_txn_id")
        if self.lines and sum(line.amount for line in self.lines) != self.total:
            raise InvalidEvent("total does not equal the sum of line amounts")
        if self.tenders and sum(t.amount for t in self.tenders) != self.total:
            raise InvalidEvent("total does not equal the sum of tenders")

    @property
    def routing_key(self) -> str:
        """The sale this receipt belongs to: a sale and all its returns share one key."""
        return self.original_txn_id or self.txn_id


class RfidRead(Record, tag="rfid_read"):
    """One tag seen by one reader antenna. ``antenna`` is a 1-based index."""

    reader_id: Id
    antenna: Annotated[int, msgspec.Meta(ge=1, le=64)]
    epc: Annotated[str, msgspec.Meta(pattern="^[0-9A-Fa-f]{4,64}$")]
    rssi_dbm: Annotated[float, msgspec.Meta(ge=-120, le=20)]
    ts: dt.datetime
    clock_skew_s: float | None = None
    mall_id: str | None = None
    duplicate: bool = False
    event_id: str | None = None

    def validate(self) -> None:
        _require_aware("ts", self.ts)


class FootfallTick(Record, tag="footfall_tick"):
    """People counted by one counter over one interval (deltas, not cumulative totals)."""

    counter_id: Id
    ts: dt.datetime
    count_in: Count = msgspec.field(default=0, name="in")
    count_out: Count = msgspec.field(default=0, name="out")
    interval_s: Annotated[int, msgspec.Meta(gt=0)] = 60
    clock_skew_s: float | None = None
    mall_id: str | None = None
    event_id: str | None = None

    def validate(self) -> None:
        _require_aware("ts", self.ts)


class ParkingEvent(Record, tag="parking_event"):
    """A vehicle passing a car-park gate, identified by its plate."""

    gate_id: Id
    car_park_id: Id
    plate: Id
    direction: Literal["entry", "exit"]
    ts: dt.datetime
    clock_skew_s: float | None = None
    mall_id: str | None = None
    event_id: str | None = None

    def validate(self) -> None:
        _require_aware("ts", self.ts)


class LedgerEntry(Record, tag="ledger_entry"):
    """One effect of a receipt or operation on a member card.

    ``cause`` is the kind of effect (points_earned, voucher_issued, rejected...), ``txn_id``
    the receipt or operation, ``rule_id``/``rule_version`` the rule that decided it.
    ``account``/``delta`` move a balance (points, or cents of stored value or of a
    ``voucher:<id>``); ``amount`` is the cents an effect is about when no balance moves
    (a discount, a refused tender). ``balance_after`` is the account after the whole
    receipt. ``entry_id`` derives from all of these, so the same effect always has the
    same id; ``replayed`` marks a re-emission (the sink drops those it holds already).
    """

    entry_id: Id
    mall_id: str
    member_id: str
    account: str
    delta: int
    balance_after: int
    cause: str
    txn_id: str
    store_id: str
    ts: dt.datetime
    business_day: dt.date
    replayed: bool = False
    rule_id: str = ""
    rule_version: str = ""
    amount: int = 0
    voucher_id: str = ""
    reason: str = ""
    by: str = ""


class Alert(Record, tag="alert"):
    """Something a person should act on: a VIP arrival, a churn signal, a device fault.

    ``ts`` is when what the alert is about happened (the RFID read), ``decided_at`` when the
    hub decided to alert: with the publish time the delivery adds, alert latency can be charted.
    Member alerts carry the tier and preferences; the name only where the policy allows it.
    """

    alert_id: Id
    mall_id: str
    kind: str
    ts: dt.datetime
    severity: Literal["info", "warning", "critical"] = "info"
    member_id: str | None = None
    zone_id: str | None = None
    message: str = ""
    decided_at: dt.datetime | None = None
    tier: str | None = None
    visit_id: str | None = None
    name: str | None = None
    top_brands: tuple[str, ...] = ()
    top_categories: tuple[str, ...] = ()
    matching_brands: tuple[str, ...] = ()
    published_at: dt.datetime | None = None


NoteKind = Literal["suggestion", "complaint", "request"]


class Acknowledgement(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Staff saying they took care of an alert, as a PDA sends it on MQTT or the board POSTs it.

    On HTTP the alert is named by the URL; on MQTT the message carries ``alert_id``. A note
    (会员建议、投诉记录) has a kind and a text, or is absent.
    """

    staff_id: Id
    alert_id: str | None = None
    note_kind: NoteKind | None = None
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""

    def validate(self) -> None:
        if bool(self.note_kind) != bool(self.note.strip()):
            raise InvalidEvent("a note needs both note_kind (suggestion, complaint or request) and its text")


class ReceptionRecord(Record, tag="reception_record"):
    """An acknowledged alert, kept for reception: who took it, when, and any note the member left.

    ``reception_id`` is derived from the alert, the staff member and the note, so the same
    acknowledgement sent twice (a double click, a PDA retrying, HTTP and MQTT) is one record.
    ``business_day`` is the mall's local day of the acknowledgement.
    """

    reception_id: Id
    alert_id: Id
    mall_id: str
    zone_id: str | None
    alert_kind: str
    member_id: str | None
    tier: str | None
    alert_ts: dt.datetime
    staff_id: Id
    acked_at: dt.datetime
    business_day: dt.date
    channel: Literal["http", "mqtt"]
    note_kind: NoteKind | None = None
    note: str = ""


def reception_id(alert_id: str, ack: Acknowledgement) -> str:
    """The identity of an acknowledgement: the same alert, staff member and note give the same id."""
    text = f"{alert_id}\0{ack.staff_id}\0{ack.note_kind or ''}\0{ack.note.strip()}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class VipTick(Record, tag="vip_tick"):
    """Time passing for one member's presence: leaving has no read of its own. The presence step tells it
    itself when marks move its clock; hubs before the marks sent it on ``rfid.by_member``, where it still counts."""

    member_id: Id
    now: dt.datetime


class VipMark(Record, tag="vip_mark"):
    """How far one ``rfid.reads`` partition's reads have been routed on: sent to every ``rfid.by_member`` partition
    after the reads it covers, so the presence there never takes time past reads still on their way."""

    source_partition: int
    #: event time of that partition's latest read, plus the wall time passed since (epoch seconds)
    now_s: float
    #: no read there for a while: it holds nobody's clock back
    idle: bool = False
    #: event time of that partition's latest read (epoch seconds; 0: none yet)
    read_s: float = 0.0


class CustomerTick(Record, tag="customer_tick"):
    """The event time a quiet partition has reached: its members are evaluated at the day ends passed since."""

    now: dt.datetime


class CustomerSnapshot(Record, tag="customer_snapshot"):
    """One member as a customer at ``as_of``, one row for the customer dashboards (the latest ``as_of`` wins).

    The static attributes come from member master data, "" when unknown.
    """

    member_id: Id
    mall_id: str
    as_of: dt.datetime
    first_purchase: dt.date | None
    last_purchase: dt.date | None
    repeat_days: int
    receipts: int
    spend_cents: int
    p_alive: float | None
    lifecycle_stage: str | None
    rfm_segment: str | None
    value_class: str
    alert: str
    top_brands: list[str]
    top_categories: list[str]
    price_band_cents: list[int]
    weekday_visits: list[int]
    hour_visits: list[int]
    tier: str = ""
    age_band: str = ""
    gender: str = ""
    region: str = ""
    occupation: str = ""
    education: str = ""


class FootfallMark(Record, tag="footfall_mark"):
    """How far one input partition's events have got for a mall (``source`` ``topic:partition``).

    The footfall agent closes an interval only once every busy input has passed it, so an
    input that is read faster than another does not make the other's events late. With
    ``source`` empty it is the idle timer moving a quiet mall's clock on; ``caught_up`` says
    the partition has nothing more to read for now, so the clock need not wait for it.
    """

    mall_id: Id
    ts: dt.datetime
    source: str = ""
    caught_up: bool = False


class FootfallBatch(Record, tag="footfall_batch"):
    """What a router read for one mall in one batch, in the order it read it, as one message.

    A message per tick, sale or mark cost more in faust than the footfall core spent on it.
    """

    items: list[FootfallTick | RfidRead | PosTransaction | FootfallMark]

    def validate(self) -> None:
        for item in self.items:
            item.validate()


class ParkingBatch(Record, tag="parking_batch"):
    """One mall's gate events from one batch of a router, in order, as one message."""

    events: list[ParkingEvent]

    def validate(self) -> None:
        for event in self.events:
            event.validate()


class PathStop(msgspec.Struct, frozen=True):
    """One place of a visit's path, with how long the member stayed."""

    place: str
    arrived: dt.datetime
    left: dt.datetime
    dwell_s: float


class VipVisit(Record, tag="vip_visit"):
    """A finished VIP visit, one row for the VIP dashboard; re-sent under the same id when late spend arrives."""

    visit_id: Id
    mall_id: str
    member_id: str
    tier: str
    visit_number: int
    arrived: dt.datetime
    left: dt.datetime
    path: list[PathStop]
    zone_dwell_s: dict[str, float]
    reads: int
    spend_cents: int
    #: in id order, however the receipts arrived (a partition that moved between workers reorders them)
    txn_ids: list[str]


class DeviceHealth(Record, tag="device_health"):
    """What one device has sent since its gateway started, published every few seconds."""

    device_id: Id
    ts: dt.datetime
    last_seen: str | None = None
    frames: Count = 0
    events: Count = 0
    rejects: Count = 0
    duplicates: Count = 0
    errors: Count = 0
    refused: Count = 0
    last_error: str | None = None


class DeadLetter(Record, tag="dead_letter"):
    """Input that could not be accepted, kept whole with the reason and where it came from."""

    dead_letter_id: Id
    source: str
    reason: str
    payload: str
    ts: dt.datetime


def dead_letter(source: str, reason: str, payload: bytes | str, limit: int | None = None) -> DeadLetter:
    """A dead letter identified by what went wrong with which input.

    A redelivered or replayed bad message is stored once; ``source`` (topic,
    partition and offset, or file and line) says where it was last seen. A payload
    near ``limit`` bytes is cut to an eighth of it in characters (JSON escapes a character in at
    most six bytes), so the letter itself still fits a record.
    """
    text = payload.decode("utf-8", "backslashreplace") if isinstance(payload, bytes) else payload
    origin = source.split(":", 1)[0]
    digest = hashlib.blake2b(f"{origin}\0{reason}\0{text}".encode(), digest_size=16).hexdigest()
    if limit is not None and len(text) > limit // 8:
        text = f"{text[: limit // 8]}... ({len(text)} characters, cut to fit a record)"
    return DeadLetter(dead_letter_id=digest, source=source, reason=reason, payload=text, ts=dt.datetime.now(dt.UTC))


InputEvent = PosTransaction | RfidRead | FootfallTick | ParkingEvent
DeviceEvent = RfidRead | FootfallTick | ParkingEvent
#: The ``type`` tags of device events.
DEVICE_TYPES = frozenset(kind.__struct_config__.tag for kind in (RfidRead, FootfallTick, ParkingEvent))


def identity(event: DeviceEvent) -> str:
    """The id a device event is stored under, so a redelivered or replayed event is stored once.

    Devices send no ids of their own: the gateway (or a replay) gives each event one as it
    first takes it, and that id travels with the event however often it is delivered. An
    event without one is known by its content, time taken in UTC.
    """
    if event.event_id:
        return event.event_id
    canonical = msgspec.structs.replace(event, ts=event.ts.astimezone(dt.UTC))
    return hashlib.blake2b(_encoder.encode(canonical), digest_size=16).hexdigest()


INPUT_TYPES: dict[str, type[Record]] = {
    "pos_transaction": PosTransaction,
    "rfid_read": RfidRead,
    "footfall_tick": FootfallTick,
    "parking_event": ParkingEvent,
}

_encoder = msgspec.json.Encoder(decimal_format="number")
_decoders: dict[type, msgspec.json.Decoder] = {}


def encode(record: Record) -> bytes:
    """JSON bytes of a record, its ``type`` tag included; money as exact JSON numbers."""
    return _encoder.encode(record)


R = TypeVar("R", bound=Record)


def decode(record_type: type[R], payload: bytes | str) -> R:
    """Parse and validate one record of ``record_type``; raise :class:`InvalidEvent` otherwise."""
    decoder = _decoders.get(record_type)
    if decoder is None:
        decoder = _decoders[record_type] = msgspec.json.Decoder(record_type)
    try:
        record = decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(str(exc)) from None
    record.validate()
    return record


def decode_input(payload: bytes | str) -> InputEvent:
    """Parse one input event of any of the four input types, chosen by its ``type`` field."""
    return decode(InputEvent, payload)  # type: ignore[arg-type]


# -- loyalty requests and member notifications ------------------------------------------

CardStatusName = Literal["active", "lost", "frozen", "recalled"]


class HoldRequest(Record, tag="hold_request"):
    """A till asking to reserve ``amount_cents`` of stored value (or of ``voucher_id``) for a receipt not yet posted.

    It travels on ``loyalty.requests`` keyed by member, so the card is written only from
    its own stream; ``request_id`` lets the worker that took the HTTP call find its answer.
    """

    request_id: Id
    member_id: Id
    hold_id: Id
    txn_id: Id
    amount_cents: int
    voucher_id: str = ""


class ManualOperation(Record, tag="manual_operation"):
    """Service-desk work on one card; ``op_id`` makes it idempotent, ``by`` and ``why`` go on the ledger."""

    request_id: Id
    op_id: Id
    member_id: Id
    action: Literal["adjust", "rebate", "status"]
    by: str
    why: str
    ts: dt.datetime
    points: int = 0
    strategy_id: str = ""
    status: CardStatusName = "active"
    #: the API key that sent it (``by`` is who the desk names); empty for operations from before keys
    actor: str = ""
    #: the desk's mall; empty: the mall of the member's latest receipt
    mall_id: str = ""


AuditKind = Literal["manual_operation", "schedule_run", "rules_changed", "rules_refused"]


class AuditRecord(Record, tag="audit_record"):
    """Who did what, when and why: an operation on a card by hand, a schedule run by hand, a rule-file change.

    ``who`` is the person as the request or the rule file names them (the desk's ``by``, the rule file's
    ``change.by`` or, without it, the file's owner); ``actor`` is what was authenticated (the API key's
    name) or the worker that saw the change. ``audit_id`` is stable (the operation id, the rule file's
    content digest), so a record sent again, or by every worker, is stored once.
    """

    audit_id: Id
    kind: AuditKind
    ts: dt.datetime
    who: str
    actor: str
    what: str
    why: str = ""
    outcome: str = ""
    mall_id: str = ""
    member_id: str | None = None
    subject: str = ""
    detail: str = ""


class ScheduleTick(Record, tag="schedule_tick"):
    """Event time reaching ``now`` for every card of the partition it is sent to: rebates, expiry, birthdays.

    Dated runs are caught up for the days after ``since`` (the previous tick); without it, ``now``'s day only.
    """

    now: dt.datetime
    since: dt.datetime | None = None
    #: only the cards of malls in this time zone (their day starts at ``now``); empty: every card, each in its own
    timezone: str = ""


class ParkingSettlement(Record, tag="parking_settlement"):
    """A member's car leaving a car park (its plate is on the member's card): the stay to settle on the card.

    The parking agent sends it, keyed by member; the loyalty agent decides free parking or the
    fee and how it is paid, and writes the ledger. ``stay_id`` names the stay (car park, plate,
    exit time), so a stay sent again is settled once. ``business_day`` is the exit's local date:
    the day whose spend earns free parking.
    """

    stay_id: Id
    member_id: Id
    mall_id: str
    car_park_id: Id
    plate: str
    entry: dt.datetime
    exit: dt.datetime
    business_day: dt.date

    def validate(self) -> None:
        _require_aware("entry", self.entry)
        _require_aware("exit", self.exit)


#: What travels on ``rfid.by_member``: a known member's card reads, receipts and presence ticks.
PresenceInput = RfidRead | VipTick | VipMark | PosTransaction

#: What travels on ``loyalty.requests``.
LoyaltyRequest = HoldRequest | ManualOperation | ScheduleTick | ParkingSettlement


class MemberNotification(Record, tag="member_notification"):
    """A message for the member's SMS/email platform; ``notification_id`` is stable, so resends can be deduplicated."""

    notification_id: Id
    member_id: Id
    kind: Literal["points_changed", "voucher_issued", "voucher_expiring", "birthday"]
    ts: dt.datetime
    cause: str = ""
    points_delta: int = 0
    points_balance: int = 0
    voucher_id: str = ""
    amount_cents: int = 0
    valid_to: dt.datetime | None = None
