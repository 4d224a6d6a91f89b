"""Customer agents: each member receipt updates the member as a customer; ticks tell them time passed.

    pos.by_member ---+--> customer_track (customer_states) --> alerts (churn_risk, churned, recovered)
    customers.ticks -+                                     --> customers.signals (webhook, loyalty group grants)
        ^                                                  --> customers.snapshots --sink--> ClickHouse
        timer: at the end of every n-th day of event time, one tick per partition this worker holds
    pos.by_member --sink--> receipts_by_member (ClickHouse)

"Now" is event time: per partition of ``pos.by_member``, the latest receipt time seen plus
the wall time passed since (as the VIP clock), and never before the receipt or the member's
last event. A member who stops buying has no event of their own, so time is told at the end
of every n-th day, once the partition's event time is ``tick_lateness_hours`` past it
(receipts arriving that late are folded in first). The tick runs in band, before the first
receipt past that point, or, when a partition goes quiet, on a :class:`CustomerTick` a timer
sends to the partition of ``customers.ticks`` (co-partitioned with ``pos.by_member``). Either
way a day is ticked once, and the table is only written from its own stream, into the
changelog partition its keys belong to.

A tick evaluates only the members due: each evaluation computes the day on which, with no
purchase, what the member shows would next change (:func:`~.core.customers.next_change_day`),
and an index (:class:`~.core.due.DueIndex`) keeps each partition's members by that day. So
the work grows with receipts and changes, not with members x days. The index lives in
memory: it is built from the table once (at the first need, and again after a rebalance or a new churn model), and a member's
latest due day supersedes any older one.

Checkpoints and rebalance. The agent is a step of the members lane (streams/lanes.py), after the
loyalty agent's on ``pos.by_member``; the states are a store of the lane, per partition. A
receipt that changes a member writes the state to the store, and a tick whose evaluation
changes what is stored likewise; the lane's checkpoint puts each changed state on the
``customer_states`` changelog once per batch and flushes before it commits the offsets. A
receipt read again after a crash finds itself folded in already and sends the member's
snapshot again. What is kept beside the table
per partition (the due index, the clock, the last day ticked, what each member's last snapshot
showed) is dropped when the partition is revoked and built again from the table and the
partition's next receipts.

Value classes: the pyramid's cut-offs are recomputed every ``pyramid_seconds`` over the
members this worker holds. With one worker that is every member, exactly; with several,
each ranks its own partitions' members, a uniform hash sample of the population, so the
cut-offs of a few thousand members per worker are close to the global ones but not equal.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from mallstream.churn_fit import load_params

from . import topics
from .core.bgnbd import BgNbdParams
from .core.customers import ChurnSignal, CustomerState, Insight, insight, next_change_day, observe, tick
from .core.due import DueIndex
from .core.pyramid import PyramidCutoffs, pyramid_cutoffs, value_class
from .core.segments import SIGNAL_KINDS
from .lanes import BatchLane
from .master_data import MasterData, Profile
from .records import Alert, CustomerSnapshot, CustomerTick, PosTransaction, decode, encode

if TYPE_CHECKING:
    from .context import AgentContext

log = logging.getLogger(__name__)

_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(CustomerState)
#: What the customer agent reads: receipts on pos.by_member, ticks on customers.ticks.
Tracked = PosTransaction | CustomerTick
SEVERITY = {"churn_risk": "warning", "churned": "critical", "recovered": "info"}
END_OF_DAY = dt.time(23, 59, 59)


def parse_as_of(text: str, zone: dt.tzinfo) -> dt.datetime:
    """An ``--as-of`` value: a date means the end of that day, a time without offset is the mall's local time."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"as of {text!r} is not a date (2026-12-31) or a time (2026-12-31T18:00)") from None
    if len(text) <= len("2026-12-31"):
        moment = dt.datetime.combine(moment.date(), END_OF_DAY)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


class CustomerAgents:
    """The customer agents of one hub, with the member master data and the fitted churn model."""

    def __init__(self, context: AgentContext, master: MasterData, lane: BatchLane) -> None:
        self.context = context
        self.lane = lane
        #: the config's customers section (model parameters, timers), not loyalty rules
        self.config = context.settings.customers
        self.profiles = master.profiles
        self.zone = ZoneInfo(context.settings.malls[0].timezone)
        self.lateness = dt.timedelta(hours=self.config.tick_lateness_hours)
        self.default_mall = context.settings.malls[0].id
        self.partitions = context.settings.kafka.partitions
        self.params_path: Path = context.settings.resolve(self.config.params_file)
        self.params: BgNbdParams | None = None
        self._params_mtime: float | None = None
        self.cutoffs: PyramidCutoffs = pyramid_cutoffs([])
        #: per partition of pos.by_member: latest receipt time seen and when (monotonic)
        self._seen: dict[int, tuple[float, float]] = {}
        #: per partition: the last day (ordinal, mall's local date) whose end its members were ticked at
        self._ticked: dict[int, int] = {}
        #: per member key: hash of what their last snapshot said, so ticks send only changes
        self._shown: dict[bytes, int] = {}
        #: per partition: members by the day they are next due
        self._due: DueIndex[int] = DueIndex()
        self._indexed = False
        worker = context.settings.worker
        self.states = lane.store(
            "customer_states",
            topics.changelog_topic(worker.app_id, "customer_states"),
            context.lanes_dir,
            self.partitions,
        )
        for spec in (topics.POS_BY_MEMBER, topics.CUSTOMER_TICKS):
            lane.step(spec.name, self._track)
        lane.on_revoked(self._forget_partitions)
        context.timer(self.config.timer_seconds, "customer_tick", self._send_ticks)
        context.timer(self.config.pyramid_seconds, "customer_pyramid", self._recompute_cutoffs)
        self.reload_params()

    # -- time ---------------------------------------------------------------------------

    def clock(self, partition: int | None = None) -> dt.datetime:
        """Event time of one partition (or the latest over all), in the mall's zone; wall time before any receipt."""
        seen = [self._seen[partition]] if partition in self._seen else list(self._seen.values())
        if not seen:
            return dt.datetime.now(self.zone)
        now = time.monotonic()
        return dt.datetime.fromtimestamp(max(moment + now - at for moment, at in seen), self.zone)

    def _saw(self, partition: int, moment: dt.datetime) -> None:
        seen = self._seen.get(partition)
        if seen is None:  # ticks start at the end of the first day this worker sees
            self._ticked[partition] = moment.astimezone(self.zone).date().toordinal() - 1
            self._indexed = False  # its members held from before become due from that day
        if seen is None or moment.timestamp() > seen[0] + time.monotonic() - seen[1]:
            self._seen[partition] = (moment.timestamp(), time.monotonic())

    def _now_for(self, state: CustomerState, partition: int | None, at_least: dt.datetime | None = None) -> dt.datetime:
        """The clock, never before the member's last event (nor ``at_least``, the receipt being folded in)."""
        moments = [self.clock(partition).timestamp(), float(state.last_event_s)]
        if at_least is not None:
            moments.append(at_least.timestamp())
        return dt.datetime.fromtimestamp(max(moments), self.zone)

    # -- model and pyramid ----------------------------------------------------------------

    def reload_params(self) -> None:
        """Take up a parameters file `mallstream churn fit` (re)wrote; without one, P(alive) is unknown."""
        try:
            mtime = self.params_path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime != self._params_mtime:
            self.params = load_params(self.params_path).params
            self._params_mtime = mtime
            self._indexed = False  # P(alive) crosses its levels on other days now
            log.info("churn model from %s: %s", self.params_path, self.params)

    async def _recompute_cutoffs(self) -> None:
        """New cut-offs over the members held; members whose class they change get a fresh snapshot."""
        held = [(partition, key) for partition, store in self.states.held() for key in store]
        self.cutoffs = pyramid_cutoffs(
            [_state_decoder.decode(self.states.partition(partition)[key]).spend_cents for partition, key in held]
        )
        self.context.counters["customers_held"] = len(held)
        for partition, key in held:  # a snapshot only for members whose shown class (or stage...) changed
            # read again: the agent may have folded in a receipt while earlier snapshots were sent, and a
            # stale state published at a later "now" would replace the newer snapshot in ClickHouse
            stored = self.states.partitions.get(partition)
            if stored is None or key not in stored:
                continue  # the partition moved meanwhile
            state = _state_decoder.decode(stored[key])
            await self._publish(key, state, self._now_for(state, partition), [], always=False)

    # -- the agent ------------------------------------------------------------------------

    async def _track(self, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            async with self.context.dead_letter_on_failure(record, "customer tracking"):
                message = decode(Tracked, record.value)  # type: ignore[arg-type]
                partition = record.partition
                if isinstance(message, CustomerTick):
                    await self._tick_days_before(partition, message.now)
                elif message.member_id is not None:
                    await self._tick_days_before(partition, message.ts)
                    await self._observe(record.key, message, partition)

    async def _observe(self, key: bytes, txn: PosTransaction, partition: int) -> None:
        self._saw(partition, txn.ts)
        state = self._state(key) or CustomerState(txn.member_id or "")
        now = self._now_for(state, partition, at_least=txn.ts)
        updated, signals = observe(state, txn, now, self.config, self.params)
        if updated is state:  # a redelivered receipt: the crash that redelivered it may have cut its snapshot off
            await self._publish(key, state, now, [], always=True)
            return
        self.context.counters["customer_evaluations"] += 1
        self.states.partition(partition)[key] = _state_encoder.encode(updated)
        self.context.counters["customer_receipts"] += 1
        self._schedule(key, partition, updated, now)
        await self._publish(key, updated, now, signals, always=True)

    def _day_end(self, day: int) -> dt.datetime:
        return dt.datetime.combine(dt.date.fromordinal(day), END_OF_DAY, self.zone)

    async def _tick_days_before(self, partition: int, moment: dt.datetime) -> None:
        """Tick the partition at the end of every due day that ended a lateness before ``moment``, once."""
        if partition not in self._ticked:
            return  # nothing seen yet: ticks start at the end of the first day seen
        every = self.config.tick_every_days
        settled = moment - self.lateness
        last = settled.astimezone(self.zone).date().toordinal() - 1
        if self._day_end(last) >= settled:
            last -= 1
        for day in range(self._ticked[partition] + 1, last + 1):
            if day % every == every - 1:
                await self._tick_partition(partition, self._day_end(day))
        self._ticked[partition] = max(self._ticked[partition], last)

    async def _tick_partition(self, partition: int, now: dt.datetime) -> None:
        """Re-evaluate the partition's members due by ``now``'s day; members who bought since are skipped."""
        self._index()
        for _, key in self._due.pop_due(partition, now.date().toordinal()):
            state = self._state(key)
            if state is None or now.timestamp() < state.last_event_s:
                continue  # a receipt after the tick already evaluated them later than this
            updated, signals = tick(state, now, self.config, self.params)
            self.context.counters["customer_evaluations"] += 1
            if updated.alert_level != state.alert_level:  # ticks come in time order: no need to store evaluated_s
                self.states.partition(partition)[key] = _state_encoder.encode(updated)
            self._schedule(key, partition, updated, now)
            await self._publish(key, updated, now, signals, always=False)
        self.context.counters["customer_ticks"] += 1

    # -- who is due when ----------------------------------------------------------------

    def _index(self) -> None:
        """Build every held partition's due members from the table, if not done since the last reset."""
        if self._indexed:
            return
        self._due.clear()
        self._indexed = True
        for held, store in self.states.held():
            if held not in self._ticked:
                continue  # a partition not seen yet is indexed once it is (see _saw)
            for key, stored in store.items():
                state = _state_decoder.decode(stored)
                self._due.put(held, key, next_change_day(state, self._ticked[held], self.config, self.params))

    def _schedule(self, key: bytes, partition: int, state: CustomerState, now: dt.datetime) -> None:
        """Keep the member in the partition's index under the next day what they show would change."""
        self._index()
        day = next_change_day(state, now.astimezone(self.zone).date().toordinal(), self.config, self.params)
        self._due.put(partition, key, day)

    def _forget_partitions(self, revoked: set[TopicPartition]) -> None:
        """Partitions moved: what was kept of them goes; the index is built again from the table when needed."""
        lost = {tp.partition for tp in revoked}
        for partition in lost:
            self._seen.pop(partition, None)
            self._ticked.pop(partition, None)
        self._shown = {
            key: shown for key, shown in self._shown.items() if topics.partition_of(key, self.partitions) not in lost
        }
        self._indexed = False

    async def _send_ticks(self) -> None:
        """Ask each quiet held partition to tick up to the last day end its clock has passed."""
        self.reload_params()
        ticks = self.context.topic(topics.CUSTOMER_TICKS)
        for partition in sorted(self.lane.held & self._seen.keys()):
            now = self.clock(partition)
            if (now - self.lateness).date().toordinal() - 1 > self._ticked[partition]:
                await ticks.send(value=encode(CustomerTick(now=now)), partition=partition)

    # -- what goes out --------------------------------------------------------------------

    async def _publish(
        self, key: bytes, state: CustomerState, now: dt.datetime, signals: list[ChurnSignal], always: bool
    ) -> None:
        """Send the signals; send a snapshot on every receipt, and on a tick only when what it says changed."""
        profile = self.profiles.get(state.member_id, Profile())
        for signal in signals:
            alert = self._alert(state, signal, profile)
            self.context.counters[f"customer_{signal.kind}"] += 1
            await self.context.topic(topics.ALERTS).send(key=alert.mall_id.encode(), value=encode(alert))
            await self.context.topic(topics.CUSTOMER_SIGNALS).send(key=key, value=encode(alert))
        seen = insight(state, now, self.config, self.params)
        klass = value_class(state.spend_cents, self.cutoffs)
        shown = hash((seen.lifecycle_stage, seen.rfm_segment, klass, state.alert_level))
        if always or self._shown.get(key) != shown:
            self._shown[key] = shown
            snapshot = self._snapshot(state, now, seen, klass, profile)
            await self.context.topic(topics.CUSTOMER_SNAPSHOTS).send(key=key, value=encode(snapshot))

    def _alert(self, state: CustomerState, signal: ChurnSignal, profile: Profile) -> Alert:
        alive = "unknown" if signal.p_alive is None else f"{signal.p_alive:.2f}"
        return Alert(
            alert_id=f"{signal.member_id}:{signal.kind}:{int(signal.ts.timestamp())}",
            mall_id=state.mall_id or self.default_mall,
            kind=signal.kind,
            ts=signal.ts,
            severity=SEVERITY[signal.kind],
            member_id=signal.member_id,
            message=f"P(alive) {alive}, stage {signal.stage}, was {signal.previous_kind}",
            decided_at=dt.datetime.now(dt.UTC),
            tier=profile.tier or None,
        )

    def _snapshot(
        self, state: CustomerState, now: dt.datetime, seen: Insight, klass: str, profile: Profile
    ) -> CustomerSnapshot:
        return CustomerSnapshot(
            member_id=state.member_id,
            mall_id=state.mall_id,
            as_of=now,
            first_purchase=dt.date.fromordinal(state.first_day) if state.has_purchased else None,
            last_purchase=dt.date.fromordinal(state.last_day) if state.has_purchased else None,
            repeat_days=state.repeat_days,
            receipts=state.receipts,
            spend_cents=state.spend_cents,
            p_alive=seen.p_alive,
            lifecycle_stage=seen.lifecycle_stage,
            rfm_segment=seen.rfm_segment,
            value_class=klass,
            alert=SIGNAL_KINDS[state.alert_level],
            top_brands=seen.preferences["brands"],
            top_categories=seen.preferences["categories"],
            price_band_cents=state.price_band_cents,
            weekday_visits=state.weekday_visits,
            hour_visits=state.hour_visits,
            tier=profile.tier,
            age_band=profile.age_band,
            gender=profile.gender,
            region=profile.region,
            occupation=profile.occupation,
            education=profile.education,
        )

    # -- the member view ------------------------------------------------------------------

    def view(self, member_id: str, as_of: dt.datetime | None) -> dict:
        """The customer keys of ``mallstream member``; raises AsOfError for a time before the member's last event."""
        stored = self.states.get(member_id.encode())
        state = _state_decoder.decode(stored) if stored else CustomerState(member_id)
        now = as_of or self._now_for(state, None)
        seen = insight(state, now, self.config, self.params)
        return {
            "as_of": now.isoformat(),
            "p_alive": seen.p_alive,
            "lifecycle_stage": seen.lifecycle_stage,
            "rfm_segment": seen.rfm_segment,
            "value_class": value_class(state.spend_cents, self.cutoffs),
            "preferences": seen.preferences,
            "spend_cents": seen.spend_cents,
            "inter_purchase_days": seen.inter_purchase_days,
            "churn_alert": SIGNAL_KINDS[state.alert_level],
        }

    def _state(self, key: bytes) -> CustomerState | None:
        stored = self.states.get(key)
        return _state_decoder.decode(stored) if stored else None
