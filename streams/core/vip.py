"""VIP recognition: RFID reads of members' cards become alerts for staff and visit summaries.

Pure functions of (state, event, explicit time): ``on_read`` for a read, ``on_tick``
for the passing of time (leaving has no event of its own), ``add_purchase`` for the
POS spend the worker joins in. State is one :class:`VipState` per member, a msgspec
struct that round-trips through msgpack, so a faust table can hold it.

The worker looks the tag up in the member master data first: unknown tags go to
:func:`count_unknown` and are never alerted. Presence (dedup, hysteresis, leaving)
lives in :mod:`.presence`; this module decides what staff are told and what a
visit looked like.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from ...settings import Mall, VipPolicy
from ..records import Alert, PathStop, RfidRead, VipVisit
from .presence import Moved, Presence, Stretch, expire, is_fresh, observe

ARRIVAL: Final = "vip_arrival"
AT_COUNTER: Final = "vip_at_counter"
LEAVING: Final = "vip_leaving"
AlertKind = Literal["vip_arrival", "vip_at_counter", "vip_leaving"]


class Member(msgspec.Struct, frozen=True):
    """A member card's master data: who carries the tag and what they like."""

    member_id: str
    tier: str
    name: str = ""
    top_brands: tuple[str, ...] = ()
    top_categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VipPlaces:
    """The mall as the VIP core needs it: where each reader stands and what that place is."""

    mall_id: str
    timezone: ZoneInfo
    reader_place: dict[str, str]
    entrances: frozenset[str]
    counter_brands: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, mall: Mall) -> VipPlaces:
        return cls(
            mall_id=mall.id,
            timezone=ZoneInfo(mall.timezone),
            reader_place={reader.id: reader.place for reader in mall.rfid_readers},
            entrances=frozenset(entrance.id for entrance in mall.entrances),
            counter_brands={store.id: tuple(store.brand_counters) for store in mall.stores if store.brand_counters},
        )

    def local(self, seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, self.timezone)


class Purchase(msgspec.Struct, array_like=True, frozen=True):
    ts: float
    amount_cents: int
    txn_id: str | None


class VipState(msgspec.Struct):
    """Everything the stream keeps about one member's visits."""

    member_id: str
    presence: Presence = msgspec.field(default_factory=Presence)
    #: finished visits so far
    visits: int = 0
    #: "<kind> <zone>" -> read time of the last alert sent
    cooldowns: dict[str, float] = {}
    #: spend not yet part of a finished visit
    purchases: list[Purchase] = []
    last_visit: VipVisit | None = None


class Step(msgspec.Struct):
    """What one call produced: alerts to deliver and finished visits to sink."""

    alerts: list[Alert] = []
    visits: list[VipVisit] = []


class UnknownTags(msgspec.Struct):
    """Reads of tags no member carries: counted per tag, never alerted."""

    reads: int = 0
    tags: dict[str, int] = {}


def count_unknown(tally: UnknownTags, read: RfidRead) -> UnknownTags:
    """Count a read of an unknown tag; reads the reader marked duplicate are not counted."""
    if read.duplicate:
        return tally
    return UnknownTags(reads=tally.reads + 1, tags={**tally.tags, read.epc: tally.tags.get(read.epc, 0) + 1})


def on_read(
    state: VipState | None, read: RfidRead, member: Member, now: dt.datetime, places: VipPlaces, policy: VipPolicy
) -> tuple[VipState, Step]:
    """Apply one read of a member's tag, decided at ``now``. The input state is not modified.

    Reads marked duplicate, repeats within the dedup window and reads from readers
    the mall does not know change nothing.
    """
    state = state or VipState(member.member_id)
    place = places.reader_place.get(read.reader_id)
    ts = read.ts.timestamp()
    if read.duplicate or place is None or not is_fresh(state.presence, read.epc, read.reader_id, ts, policy.presence):
        return state, Step()
    presence, moved = observe(state.presence, read.epc, read.reader_id, place, ts, policy.presence)
    state = msgspec.structs.replace(state, presence=presence)
    return _react(state, moved, member, now, places, policy)


def on_tick(
    state: VipState, member: Member, now: dt.datetime, places: VipPlaces, policy: VipPolicy
) -> tuple[VipState, Step]:
    """Let time pass to ``now``: commit a settled move and detect leaving (absence has no event)."""
    moment = now.timestamp()
    presence, moved = expire(state.presence, moment, places.entrances, policy.presence)
    purchases = state.purchases
    if not presence.stops and not moved.closed:  # spend this old can no longer join a visit
        purchases = [p for p in purchases if p.ts >= moment - policy.presence.absence_timeout_s]
    state = msgspec.structs.replace(state, presence=presence, purchases=purchases)
    return _react(state, moved, member, now, places, policy)


def add_purchase(
    state: VipState | None,
    member_id: str,
    amount_cents: int,
    ts: dt.datetime,
    txn_id: str | None = None,
    lead_s: float = 0.0,
) -> tuple[VipState, Step]:
    """Add what the member spent at ``ts`` (negative for a refund) to the visit it falls in.

    A purchase belongs to the latest visit that began before it (up to ``lead_s`` before
    its first read, the presence's absence timeout), however long after the last read it
    came: a member the readers lost is still in the mall until the next visit begins. So
    the answer does not depend on when the visit was closed, which in a replay is a race
    between the reads, the receipts and the timer. Spend of the open visit is kept until
    it ends; spend of a visit already summarised amends it, emitted again under the same
    ``visit_id``. A ``txn_id`` seen before is ignored: a redelivered receipt counts once.
    """
    state = state or VipState(member_id)
    if state.member_id != member_id:
        raise ValueError(f"purchase of {member_id} applied to the state of {state.member_id}")
    last = state.last_visit
    known = {p.txn_id for p in state.purchases} | set(last.txn_ids if last else ())
    if txn_id is not None and txn_id in known:
        return state, Step()
    moment = ts.timestamp()
    opened = _open_since(state.presence)
    if (
        last is not None
        and moment >= last.arrived.timestamp() - lead_s
        and (opened is None or moment < opened - lead_s)
    ):
        amended = msgspec.structs.replace(
            last, spend_cents=last.spend_cents + amount_cents, txn_ids=sorted([*last.txn_ids, *filter(None, [txn_id])])
        )
        return msgspec.structs.replace(state, last_visit=amended), Step(visits=[amended])
    purchase = Purchase(moment, amount_cents, txn_id)
    return msgspec.structs.replace(state, purchases=[*state.purchases, purchase]), Step()


def _open_since(presence: Presence) -> float | None:
    """When the visit open now began (its first stop, or the place it is settling on), if one is open."""
    first = presence.stops[0] if presence.stops else presence.candidate
    return first.arrived if first is not None else None


def _react(
    state: VipState, moved: Moved, member: Member, now: dt.datetime, places: VipPlaces, policy: VipPolicy
) -> tuple[VipState, Step]:
    """Turn what the presence did into a visit summary and the alerts the tier rule lets through."""
    step = Step(alerts=[], visits=[])
    moments: list[tuple[AlertKind, str, float, str]] = []  # (kind, zone, read time, visit id)
    if moved.closed:
        state, summary = _finish(state, moved.closed, member, places, policy)
        step.visits.append(summary)
        last = moved.closed.stops[-1]
        moments.append((LEAVING, last.place, last.left, summary.visit_id))
    if moved.entered is not None:
        entered = moved.entered
        visit_id = _visit_id(state.member_id, state.presence.stops[0].arrived)
        if moved.opened and entered.place in places.entrances:
            moments.append((ARRIVAL, entered.place, entered.arrived, visit_id))
        if entered.place in places.counter_brands:
            moments.append((AT_COUNTER, entered.place, entered.arrived, visit_id))
    cooldowns = state.cooldowns
    for kind, zone, read_ts, visit_id in moments:
        alert = _alert(kind, zone, read_ts, visit_id, member, cooldowns, now, places, policy)
        if alert is not None:
            step.alerts.append(alert)
            cooldowns = {**cooldowns, f"{kind} {zone}": read_ts}
    return msgspec.structs.replace(state, cooldowns=cooldowns), step


def _finish(
    state: VipState, stretch: Stretch, member: Member, places: VipPlaces, policy: VipPolicy
) -> tuple[VipState, VipVisit]:
    """Summarise a closed visit with the spend since it began; spend of a visit opened meanwhile waits for that one."""
    stops, start = stretch.stops, stretch.stops[0].arrived
    earliest = start - policy.presence.absence_timeout_s
    following = _open_since(state.presence)  # a visit opened by the same read belongs its own spend
    until = math.inf if following is None else following - policy.presence.absence_timeout_s
    spent = [p for p in state.purchases if earliest <= p.ts < until]
    zone_dwell: dict[str, float] = {}
    for stop in stops:
        zone_dwell[stop.place] = zone_dwell.get(stop.place, 0.0) + stop.dwell_s
    summary = VipVisit(
        visit_id=_visit_id(state.member_id, start),
        mall_id=places.mall_id,
        member_id=state.member_id,
        tier=member.tier,
        visit_number=state.visits + 1,
        arrived=places.local(start),
        left=places.local(stops[-1].left),
        path=[PathStop(s.place, places.local(s.arrived), places.local(s.left), s.dwell_s) for s in stops],
        zone_dwell_s=zone_dwell,
        reads=stretch.reads,
        spend_cents=sum(p.amount_cents for p in spent),
        txn_ids=sorted(p.txn_id for p in spent if p.txn_id),
    )
    waiting = [p for p in state.purchases if p.ts >= until]
    return msgspec.structs.replace(state, purchases=waiting, last_visit=summary, visits=state.visits + 1), summary


def _alert(
    kind: AlertKind,
    zone: str,
    read_ts: float,
    visit_id: str,
    member: Member,
    cooldowns: dict[str, float],
    now: dt.datetime,
    places: VipPlaces,
    policy: VipPolicy,
) -> Alert | None:
    """The alert, if the member's tier wants it and it falls outside quiet hours and its cooldown.

    The cooldown runs on read time, so a replay decides as the live run did; quiet
    hours use the decision time, because they are about when staff are disturbed.
    """
    rule = policy.tiers.get(member.tier)
    if rule is None or not rule.allows(kind):
        return None
    local_now = now.astimezone(places.timezone).time()
    if any(quiet.covers(local_now) for quiet in policy.quiet_hours):
        return None
    last = cooldowns.get(f"{kind} {zone}")
    if last is not None and abs(read_ts - last) < rule.cooldown_s:
        return None
    liked = {brand.casefold() for brand in member.top_brands}
    counter = places.counter_brands.get(zone, ()) if kind == AT_COUNTER else ()
    matching = tuple(brand for brand in counter if brand.casefold() in liked)
    name = member.name if rule.include_name and member.name else None
    return Alert(
        alert_id=hashlib.blake2b(f"{visit_id}\0{kind}\0{zone}\0{read_ts}".encode(), digest_size=16).hexdigest(),
        mall_id=places.mall_id,
        kind=kind,
        ts=places.local(read_ts),
        decided_at=now,
        severity=rule.severity,
        member_id=member.member_id,
        tier=member.tier,
        zone_id=zone,
        visit_id=visit_id,
        top_brands=member.top_brands,
        top_categories=member.top_categories,
        matching_brands=matching,
        name=name,
        message=_message(kind, name or member.member_id, member.tier, zone, matching),
    )


_VERB = {ARRIVAL: "arrived at", AT_COUNTER: "is at", LEAVING: "left from"}


def _message(kind: AlertKind, who: str, tier: str, zone: str, matching: tuple[str, ...]) -> str:
    likes = f"; likes {', '.join(matching)}" if matching else ""
    return f"{tier.upper()} {who} {_VERB[kind]} {zone}{likes}"


def _visit_id(member_id: str, started: float) -> str:
    """Stable across replays: the member and the first read's time in milliseconds."""
    return f"{member_id}-{round(started * 1000)}"
