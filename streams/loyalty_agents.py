"""The loyalty agent: receipts, till authorisations, service-desk work, schedules and signals against each card.

    pos.by_member -------+                         --> ledger --sink--> ClickHouse ledger_entries
    loyalty.requests ----+--apply_loyalty (cards)--> loyalty.rejects (refused inputs, with reasons)
    customers.signals ---+                         --> members.notifications --notify_members--> webhook
        ^ timer: a ScheduleTick per held partition when its event time reaches a new day

The card lives in a store of the members lane keyed by member and is written only from
this one step: a till's authorisation or a service-desk operation arriving over HTTP becomes
a request on ``loyalty.requests`` (keyed by member, co-partitioned with ``pos.by_member``),
and the HTTP view awaits the answer the agent gives to a future keyed by request id in
the same worker. A member's car leaving a car park comes the same way, from the parking
agent: the stay is settled on the card (free parking by same-day spend, points or tier,
else the fee, from the card or cash) and its ledger entries name the parking rule.

The engine (``streams/core/``) is pure: it returns the new card and its effects; every
effect becomes a ledger entry naming its cause, rule and rule version (and, for manual
work, who and why). The rule file is re-read when it changes: entries
carry the version that made them, and a broken edit leaves the previous rules in force.

Scheduled operations run in event time: per partition, the latest receipt time seen plus
the wall time passed since. When that reaches a new day, a :class:`ScheduleTick` at the
day's start is sent to the partition, and the agent runs automatic rebates, voucher
expiry, birthday gifts and reminders for the cards due that day. Each card written is put
in a due index (:class:`~.core.due.DueIndex`, per partition and time zone) under the next
day the schedule has something to do for it (:func:`~.core.card_schedule.next_scheduled_day`),
so a day start touches the cards due, not every card: the work grows with events, not with
members x days. The index lives in memory; it is built from the cards at a partition's first
tick, and again after a rebalance or a rule file change. ``POST /schedule/?at=`` sends a
tick for an explicit moment, which runs every card.

Checkpoints and rebalance. The agent is a step of the members lane (streams/lanes.py): it
reads its inputs a batch at a time, and the cards are a store of the lane, per partition. Every
input that changes a card writes it to the store; the lane's checkpoint puts each changed
card on the ``cards`` changelog once per batch, flushes, and only then commits the batch's
offsets. A batch read again after a crash finds its inputs on the cards already: they come
back replayed, and their ledger entries are sent again with the same ids. The per-partition
clocks and last scheduled days are dropped when a partition is revoked; the schedule's runs
are idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

import faust
import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from mallstream.sinks.alerts import post_json

from . import topics
from .core.accounts import Effect, MemberCard
from .core.card_schedule import next_scheduled_day
from .core.due import DueIndex
from .core.engine import REFUSALS, enrol, evaluate
from .core.holds import AuthRequest, authorise
from .core.notices import notices, reminders
from .core.operations import group_grant, manual, scheduled_run
from .core.parking_fees import StayAtExit, settle_at_exit
from .core.rules import RuleBook, RuleFile
from .lanes import BatchLane
from .loyalty_audit import operation_audit, rules_audit
from .master_data import MasterData
from .paging import PagedTable
from .records import (
    Alert,
    HoldRequest,
    LedgerEntry,
    LoyaltyRequest,
    ManualOperation,
    MemberNotification,
    ParkingSettlement,
    PosTransaction,
    ScheduleTick,
    decode,
    encode,
)

if TYPE_CHECKING:
    from .context import AgentContext

log = logging.getLogger(__name__)

#: What the loyalty agent reads, from pos.by_member, loyalty.requests and customers.signals.
LoyaltyInput = PosTransaction | LoyaltyRequest | Alert

_card_encoder = msgspec.msgpack.Encoder()
_card_decoder = msgspec.msgpack.Decoder(MemberCard)


#: First bytes of a compressed card (0xc1 never starts msgpack, so a card stored before compression reads as it was).
_DEFLATED = b"\xc1z"


def encode_card(card: MemberCard) -> bytes:
    """The card as msgpack, deflated: a card is written to its changelog at every receipt, and its memory of
    receipts (rule ids, accounts, scopes repeated) deflates to a fifth (4.3 KB to 0.95 KB on the purchase history)."""
    return _DEFLATED + zlib.compress(_card_encoder.encode(card), 1)


def decode_card(data: bytes) -> MemberCard:
    if data.startswith(_DEFLATED):
        data = zlib.decompress(data[len(_DEFLATED) :])
    return _card_decoder.decode(data)


def _entry_id(effect: Effect) -> str:
    """Cause, kind, rule and account (or voucher): one effect, one id, at most 128 characters."""
    full = ":".join((effect.cause, effect.kind, effect.rule_id, effect.account or effect.voucher_id))
    if len(full) <= 128:
        return full
    return f"{effect.cause[:64]}:{hashlib.blake2b(full.encode(), digest_size=16).hexdigest()}"


class Context(NamedTuple):
    """Where and when an input happened, as its ledger entries say."""

    mall_id: str
    store_id: str
    ts: dt.datetime
    business_day: dt.date

    @classmethod
    def of_receipt(cls, txn: PosTransaction) -> Context:
        return cls(txn.mall_id or "", txn.store_id, txn.ts, txn.business_day)


def ledger_entries(card: MemberCard, effects: list[Effect], context: Context) -> list[LedgerEntry]:
    """The effects of one input as ledger entries; ids derive from cause, kind, account and rule."""
    balances = {"points": card.points, "stored_value": card.stored_value}
    balances |= {f"voucher:{vid}": voucher.remaining for vid, voucher in card.vouchers.items()}
    return [
        LedgerEntry(
            entry_id=_entry_id(effect),
            mall_id=context.mall_id,
            member_id=card.member_id,
            account=effect.account,
            delta=effect.delta,
            balance_after=balances.get(effect.account, 0),
            cause=effect.kind,
            txn_id=effect.cause,
            store_id=context.store_id,
            ts=context.ts,
            business_day=context.business_day,
            replayed=effect.replayed,
            rule_id=effect.rule_id,
            rule_version=effect.rule_version,
            amount=effect.amount,
            voucher_id=effect.voucher_id,
            reason=effect.reason,
            by=effect.by,
        )
        for effect in effects
    ]


#: How often the rule file is looked at for an edit: an edit is in force for receipts read this long after it.
RULES_CHECK_S = 0.2


class LoyaltyAgent:
    """Cards in a table, the rule file, the agent applying every input to a card, and the schedule."""

    def __init__(self, context: AgentContext, master: MasterData, lane: BatchLane) -> None:
        self.context = context
        self.lane = lane
        conf = context.settings
        self.rules = RuleFile(conf.resolve(conf.rules.file), check_every_s=RULES_CHECK_S)
        self.rules.current()  # a rule file that was never good stops the worker at start
        self._reported_error: str | None = None
        self.birthdays = master.birthdays
        #: the worker that sees a rule file change, in its audit records
        self.actor = conf.worker.group_instance_id
        #: every mall's time zone: a card's days, schedules and desk work follow its own mall's
        self.zones = {mall.id: ZoneInfo(mall.timezone) for mall in conf.malls}
        #: where a card that has never had a receipt belongs (the config's first mall)
        self.default_mall = conf.malls[0].id
        self.partitions = conf.kafka.partitions
        self.expiring_within = dt.timedelta(days=conf.notifications.expiring_within_days)
        #: request id -> the HTTP view waiting for the agent's answer, in this worker
        self.answers: dict[str, asyncio.Future] = {}
        #: per partition: the latest receipt time seen (s) and when (monotonic), and the last day scheduled
        self._seen: dict[int, tuple[float, float]] = {}
        #: per (partition, time zone): the last day whose start was scheduled there
        self._scheduled_day: dict[tuple[int, str], dt.date] = {}
        #: per (partition, time zone): cards by the next day the schedule is due for them, the
        #: last day start run there, and the rule file version the index was built under
        self._due: DueIndex[tuple[int, str]] = DueIndex()
        self._ran_day: dict[tuple[int, str], dt.date] = {}
        self._due_rules = ""
        self.cards = lane.store(
            "cards",
            topics.changelog_topic(conf.worker.app_id, "cards"),
            context.lanes_dir,
            self.partitions,
        )
        for spec in (topics.POS_BY_MEMBER, topics.LOYALTY_REQUESTS, topics.CUSTOMER_SIGNALS):
            lane.step(spec.name, self._apply)
        lane.on_revoked(self._forget_partitions)
        context.timer(conf.rules.schedule_seconds, "loyalty_schedule", self._schedule_due_days)
        context.timer(conf.rules.schedule_seconds, "rules_audit", self._audit_rules)
        #: the rule file content (and refused edit) this worker has put in the audit log
        self._audited: tuple[str | None, str | None] = (None, None)
        self._audited_tag = ""
        if conf.notifications.webhook_url:
            context.agent(topics.MEMBER_NOTIFICATIONS, "notify_members", self._deliver)

    def _table(self, partition: int) -> PagedTable:
        """The cards of a partition this worker holds: a card remembers its receipts for the rule file's
        retention_days, so a busy member's may outgrow a record and is paged."""
        return PagedTable(self.cards.partition(partition), self.context.payload_limit)

    def card(self, member_id: str) -> MemberCard | None:
        """The member's card, if this worker holds its partition."""
        key = member_id.encode()
        partition = topics.partition_of(key, self.partitions)
        if partition not in self.cards.partitions:
            return None
        stored = self._table(partition).get(key)
        return decode_card(stored) if stored else None

    def rule_book(self) -> RuleBook:
        """The rules in force now (re-read if the file changed; a broken edit is logged once and ignored)."""
        book = self.rules.current()
        error = str(self.rules.error) if self.rules.error else None
        if error and error != self._reported_error:
            log.error("rule file edit refused, version %s stays in force: %s", book.tag, error)
        self._reported_error = error
        return book

    # -- asking the agent (HTTP views) ----------------------------------------------------

    async def ask(self, request: HoldRequest | ManualOperation) -> dict:
        """Send a request through the member's partition and wait for the agent's answer; TimeoutError if none."""
        future = asyncio.get_running_loop().create_future()
        self.answers[request.request_id] = future
        try:
            await self.context.topic(topics.LOYALTY_REQUESTS).send(
                key=request.member_id.encode(), value=encode(request)
            )
            return await asyncio.wait_for(future, self.context.settings.rules.answer_timeout_s)
        finally:
            self.answers.pop(request.request_id, None)

    def _answer(self, request_id: str, answer: dict) -> None:
        future = self.answers.get(request_id)
        if future is not None and not future.done():
            future.set_result(answer)

    async def run_schedule(self, now: dt.datetime) -> int:
        """Schedule ticks at ``now`` to every partition (an explicit clock); returns how many were sent."""
        requests = self.context.topic(topics.LOYALTY_REQUESTS)
        for partition in range(self.partitions):
            await requests.send(value=encode(ScheduleTick(now=now)), partition=partition)
        return self.partitions

    # -- the agent ------------------------------------------------------------------------

    async def _apply(self, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            async with self.context.dead_letter_on_failure(record, "loyalty"):
                message = decode(LoyaltyInput, record.value)  # type: ignore[arg-type]
                key, cards = record.key, self._table(record.partition)
                if isinstance(message, PosTransaction):
                    await self._receipt(cards, key, message, record.partition)
                elif isinstance(message, HoldRequest):
                    self._hold(cards, key, message)
                elif isinstance(message, ManualOperation):
                    await self._manual(cards, key, message)
                elif isinstance(message, ScheduleTick):
                    await self._scheduled(cards, message, record.partition)
                elif isinstance(message, ParkingSettlement):
                    await self._parking(cards, key, message)
                else:
                    await self._signal(cards, key, message)

    def _stored(self, cards: PagedTable, key: bytes, member_id: str) -> MemberCard | None:
        """The card, with the master data's birthday if the card has none yet."""
        stored = cards.get(key)
        card = decode_card(stored) if stored else None
        birthday = self.birthdays.get(member_id)
        if card is not None and card.birthday is None and birthday is not None:
            card = msgspec.structs.replace(card, birthday=birthday)
        return card

    async def _receipt(self, cards: PagedTable, key: bytes, txn: PosTransaction, partition: int) -> None:
        if txn.member_id is None:
            self.context.counters["receipts_anonymous"] += 1
            return
        self._saw(partition, txn.ts)
        card, effects = evaluate(
            self._stored(cards, key, txn.member_id),
            txn,
            self.rule_book(),
            dt.datetime.now(dt.UTC),
            self.birthdays.get(txn.member_id),
        )
        await self._commit(cards, key, card, effects, Context.of_receipt(txn), resend_replayed=True)
        self.context.counters[
            "receipts_rejected" if any(e.kind == "rejected" for e in effects) else "receipts_applied"
        ] += 1

    def _hold(self, cards: PagedTable, key: bytes, request: HoldRequest) -> None:
        """A till authorisation: a hold placed (written to the card) or refused; no ledger entry, nothing moved yet."""
        book = self.rule_book()
        card = self._stored(cards, key, request.member_id) or enrol(request.member_id, book)
        ask = AuthRequest(request.hold_id, request.txn_id, request.amount_cents, request.voucher_id)
        held, decision = authorise(card, ask, book, dt.datetime.now(dt.UTC))
        if held is not card:
            self._write(cards, key, held)
        self.context.counters["holds_placed" if decision.approved else "holds_refused"] += 1
        self._answer(request.request_id, {"member_id": request.member_id, **msgspec.to_builtins(decision)})

    async def _manual(self, cards: PagedTable, key: bytes, operation: ManualOperation) -> None:
        book = self.rule_book()
        card = self._stored(cards, key, operation.member_id) or enrol(
            operation.member_id, book, self.birthdays.get(operation.member_id)
        )
        card, effects = manual(card, operation, book, operation.ts)
        mall_id = operation.mall_id or self._mall_of(card)
        day = operation.ts.astimezone(self._zone(mall_id)).date()
        entries = await self._commit(
            cards, key, card, effects, Context(mall_id, "", operation.ts, day), resend_replayed=True
        )
        self.context.counters["manual_operations"] += 1
        answer = {
            "op_id": operation.op_id,
            "member_id": operation.member_id,
            "replayed": bool(effects) and all(effect.replayed for effect in effects),
            "rejected": [effect.reason for effect in effects if effect.kind in REFUSALS],
            "entries": msgspec.to_builtins(entries),
        }
        await self.context.audit(operation_audit(operation, answer, entries, mall_id))
        self._answer(operation.request_id, answer)

    async def _parking(self, cards: PagedTable, key: bytes, request: ParkingSettlement) -> None:
        """A member's car left a car park: free parking or the fee on the card, once per stay."""
        book = self.rule_book()
        card = self._stored(cards, key, request.member_id) or enrol(
            request.member_id, book, self.birthdays.get(request.member_id)
        )
        stay = StayAtExit(request.stay_id, request.entry, request.exit, request.business_day)
        card, effects = settle_at_exit(card, stay, book, request.exit)
        await self._commit(
            cards,
            key,
            card,
            effects,
            Context(request.mall_id, request.car_park_id, request.exit, request.business_day),
            resend_replayed=True,
        )
        free = any(effect.kind == "parking_discount" for effect in effects)
        self.context.counters["parking_free" if free else "parking_charged"] += 1

    async def _signal(self, cards: PagedTable, key: bytes, signal: Alert) -> None:
        """A customer signal (churn_risk...): the rule file's group grants for that signal, once per signal."""
        book = self.rule_book()
        member_id = signal.member_id or key.decode()
        for grant in (g for g in book.group_grants if g.signal == signal.kind):
            card = self._stored(cards, key, member_id) or enrol(member_id, book, self.birthdays.get(member_id))
            granted, effects = group_grant(
                {member_id: card},
                [member_id],
                book,
                signal.ts,
                f"{grant.id}:{int(signal.ts.timestamp())}",
                grant.points,
                grant.voucher_campaign,
                by="customers.signals",
                why=f"{signal.kind}: {signal.message}",
                rule_id=grant.id,
            )
            day = signal.ts.astimezone(self._zone(signal.mall_id)).date()
            await self._commit(
                cards,
                key,
                granted[member_id],
                effects,
                Context(signal.mall_id, "", signal.ts, day),
                resend_replayed=False,
            )
            self.context.counters["group_grants"] += 1

    async def _scheduled(self, cards: PagedTable, tick: ScheduleTick, partition: int) -> None:
        """Rebate runs, expiry, birthday gifts and reminders due when the tick's day starts, for the cards it is for.

        A tick for one time zone runs the cards of its malls that are due by its day; one for
        none (an explicit run) every card, at the tick's moment as its own mall's clock reads it.
        """
        book = self.rule_book()
        if not tick.timezone:
            for key in cards:
                stored = self._stored(cards, key, key.decode())
                if stored is not None:
                    await self._run_day_start(cards, key, stored, tick, book)
            self.context.counters["schedule_runs"] += 1
            return
        bucket, day = (partition, tick.timezone), tick.now.astimezone(ZoneInfo(tick.timezone)).date()
        if bucket not in self._ran_day or book.tag != self._due_rules:
            since = tick.since and tick.since.astimezone(ZoneInfo(tick.timezone)).date()
            self._index(cards, bucket, since or day - dt.timedelta(days=1), book)
        self._ran_day[bucket] = max(day, self._ran_day[bucket])
        for _, key in self._due.pop_due(bucket, day.toordinal()):
            card = self._stored(cards, key, key.decode())
            if card is not None and str(self._zone(self._mall_of(card))) == tick.timezone:
                self._reschedule(key, await self._run_day_start(cards, key, card, tick, book), book)
        self.context.counters["schedule_runs"] += 1

    async def _run_day_start(
        self, cards: PagedTable, key: bytes, card: MemberCard, tick: ScheduleTick, book: RuleBook
    ) -> MemberCard:
        """One card's scheduled runs and reminders at the tick, as its own mall's clock reads it; the card after."""
        mall_id = self._mall_of(card)
        now = tick.now.astimezone(self._zone(mall_id))
        ran, effects = scheduled_run(card, book, now, tick.since)
        reminded, due = reminders(ran, now, self.expiring_within)
        self.context.counters["schedule_card_runs"] += 1
        if reminded is not card:  # runs already done come back replayed and leave the card as it was
            fresh = [effect for effect in effects if not effect.replayed]
            await self._commit(cards, key, reminded, fresh, Context(mall_id, "", now, now.date()), False)
        for notification in due:
            await self._notify(notification)
        return reminded

    # -- who is due when ------------------------------------------------------------------

    def _index(self, cards: PagedTable, bucket: tuple[int, str], ran_day: dt.date, book: RuleBook) -> None:
        """Put every card of the bucket's partition and time zone in the due index, as of ``ran_day``'s start."""
        if book.tag != self._due_rules:  # other rebate days or birthday gift: every bucket again
            self._due.clear()
            self._ran_day.clear()
            self._due_rules = book.tag
        self._ran_day[bucket] = ran_day
        for key in cards:
            card = self._stored(cards, key, key.decode())
            if card is not None:
                self._reschedule(key, card, book)

    def _write(self, cards: PagedTable, key: bytes, card: MemberCard) -> None:
        """Store the card and move it in the due index: what it holds now may be due on another day."""
        cards[key] = encode_card(card)
        self._reschedule(key, card, self.rule_book())

    def _reschedule(self, key: bytes, card: MemberCard, book: RuleBook) -> None:
        zone = self._zone(self._mall_of(card))
        bucket = (topics.partition_of(key, self.partitions), str(zone))
        ran_day = self._ran_day.get(bucket)
        if ran_day is None or book.tag != self._due_rules:
            return  # not indexed yet: the bucket's first tick reads every card
        due = next_scheduled_day(card, book, ran_day, zone, self.expiring_within)
        self._due.put(bucket, key, due and due.toordinal())

    def _mall_of(self, card: MemberCard) -> str:
        return card.mall_id if card.mall_id in self.zones else self.default_mall

    def _zone(self, mall_id: str | None) -> ZoneInfo:
        return self.zones.get(mall_id or "", self.zones[self.default_mall])

    async def _commit(
        self,
        cards: PagedTable,
        key: bytes,
        card: MemberCard,
        effects: list[Effect],
        context: Context,
        resend_replayed: bool,
    ) -> list[LedgerEntry]:
        """Write the card, then send its ledger entries, rejects and notifications.

        Replayed effects (an input seen again) change nothing; for receipts and operations
        their entries are sent again (the sink drops what it holds), so a crash between
        the table write and the sends heals on redelivery.
        """
        fresh = [effect for effect in effects if not effect.replayed]
        if fresh or not effects:
            self._write(cards, key, card)
        entries = ledger_entries(card, effects if resend_replayed else fresh, context)
        for entry in entries:
            await self.context.topic(topics.LEDGER).send(key=key, value=encode(entry))
            if entry.cause in REFUSALS:
                await self.context.topic(topics.LOYALTY_REJECTS).send(key=key, value=encode(entry))
        for notification in notices(card, fresh, context.ts):
            await self._notify(notification)
        return entries

    async def _notify(self, notification: MemberNotification) -> None:
        self.context.counters[f"notify_{notification.kind}"] += 1
        await self.context.topic(topics.MEMBER_NOTIFICATIONS).send(
            key=notification.member_id.encode(), value=encode(notification)
        )

    async def _deliver(self, stream: faust.StreamT) -> None:
        """Each notification to the platform's webhook, retried; one that still fails is logged and counted."""
        conf = self.context.settings.notifications
        assert conf.webhook_url is not None
        async for event in stream.events():
            delivered = await asyncio.to_thread(
                post_json,
                conf.webhook_url,
                event.value,
                conf.webhook_timeout,
                conf.webhook_attempts,
                f"notification {event.key!r}",
            )
            self.context.counters["notifications_delivered" if delivered else "notifications_failed"] += 1

    # -- audit ----------------------------------------------------------------------------

    async def _audit_rules(self) -> None:
        """Put each rule file content this worker sees in force, and each edit it refused, in the audit log.

        Every worker sees the same file: the records are keyed by content, so each is stored once.
        """
        book = self.rule_book()
        audited_digest, audited_refusal = self._audited
        if book.version.digest != audited_digest:
            await self.context.audit(rules_audit(self.rules, book, audited_digest and self._audited_tag, self.actor))
            self._audited_tag = book.tag
        if self.rules.refused_digest and self.rules.refused_digest != audited_refusal:
            await self.context.audit(rules_audit(self.rules, book, None, self.actor, refused=True))
        self._audited = (book.version.digest, self.rules.refused_digest)

    # -- event time -----------------------------------------------------------------------

    def _saw(self, partition: int, moment: dt.datetime) -> None:
        seen = self._seen.get(partition)
        now = asyncio.get_running_loop().time()
        if seen is None or moment.timestamp() > seen[0] + now - seen[1]:
            self._seen[partition] = (moment.timestamp(), now)

    def clock(self, partition: int) -> dt.datetime:
        """Event time of a partition: its latest receipt time plus the time passed since."""
        moment, at = self._seen[partition]
        return dt.datetime.fromtimestamp(moment + asyncio.get_running_loop().time() - at, dt.UTC)

    def _forget_partitions(self, revoked: set[TopicPartition]) -> None:
        """Partitions moved: their clocks start again with their next receipt, on whichever worker holds them."""
        buckets = [(tp.partition, str(zone)) for tp in revoked for zone in self.zones.values()]
        for tp in revoked:
            self._seen.pop(tp.partition, None)
        for bucket in buckets:
            self._scheduled_day.pop(bucket, None)
            self._ran_day.pop(bucket, None)
        self._due.drop(buckets)

    async def _schedule_due_days(self) -> None:
        """A tick at the start of the day a held partition's event time reached, per time zone of the malls, catching up
        on the days since the last.

        One tick per partition, time zone and timer call, however many days a fast replay went through meanwhile.
        """
        requests = self.context.topic(topics.LOYALTY_REQUESTS)
        zones = {str(zone): zone for zone in self.zones.values()}
        for partition in sorted(self.lane.held & self._seen.keys()):
            for name, zone in sorted(zones.items()):
                today = self.clock(partition).astimezone(zone).date()
                last = self._scheduled_day.get((partition, name))
                if last is not None and today <= last:
                    continue
                since = last and dt.datetime.combine(last, dt.time(0), zone)
                start = dt.datetime.combine(today, dt.time(0), zone)
                tick = ScheduleTick(now=start, since=since, timezone=name)
                await requests.send(value=encode(tick), partition=partition)
                self._scheduled_day[(partition, name)] = today
