"""Footfall roll-ups by event time, staff deducted, joined with tills; occupancy and dwell per area.

Pure functions of (state, event, now, layout) returning the state and the rows to emit;
no I/O, so a faust agent wraps them and a test or benchmark loop calls them directly.
For speed the state is updated in place and returned.

* Intervals are by event time: a tick covering [ts - interval_s, ts) lands in the
  ``bucket_s`` interval its start falls in. ``now`` is the caller's event-time clock in
  epoch seconds (the newest event time, or the wall clock when idle); an interval closes, and its
  rows are emitted, once ``now`` is ``allowed_lateness_s`` past its end. A tick for an
  interval already closed is not dropped: its counts go out at once as ``late`` rows,
  additions to that interval's rows (sums stay right downstream).
* A counter re-pushing a tick (a period it counted already) is counted once, within
  ``dedup_horizon_s`` (see :mod:`.coverage`).
* Rows carry visitors: staff are deducted from what counters count, by staff-only
  passages (every count is staff), counters that already exclude staff (nothing to
  deduct), and staff badge passes (see :mod:`.staff`), deducted from the counter at the
  reader's door in the interval of the pass. A pass the counter did not count in that
  interval deducts nothing, so visitors never go negative, until a late tick of that
  interval brings the count it belongs to.
* POS receipts join by store and interval: a sale is a transaction, a void takes one
  back, a return is not one. Conversion, capture rate and floor attraction are ratios
  of row fields (see :class:`RollupRow` and :func:`floor_attraction`).
* Occupancy, its drift correction and dwell: see :mod:`.occupancy`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..records import FootfallTick, PosTransaction, Record, RfidRead
from .coverage import Ranges, cover, covered, forget_before
from .footfall_layout import FootfallLayout, RowKey
from .occupancy import AreaDay, AreaRow, AreaState, add_flows, close_interval, reconcile
from .staff import BadgeState, staff_pass

IN, OUT, STAFF_IN, STAFF_OUT = range(4)


# frozen=True restates what Record passes down (msgspec inherits it), for type checkers, which do not see that
class RollupRow(Record, tag="footfall_rollup", frozen=True):
    """Visitors through one counter, place, floor or the mall over one interval; ``late`` rows add to earlier ones."""

    mall_id: str
    level: str
    key: str
    start: dt.datetime
    interval_s: int
    visitors_in: int = 0
    visitors_out: int = 0
    staff_in: int = 0
    staff_out: int = 0
    transactions: int = 0
    passers_by: int = 0
    late: bool = False
    #: what a late row came from (set by the agent), so a redelivery of that event is stored once.
    cause: str = ""

    @property
    def conversion(self) -> float | None:
        """Bag rate: transactions per visitor who came in."""
        return self.transactions / self.visitors_in if self.visitors_in > 0 else None

    @property
    def capture_rate(self) -> float | None:
        """Store entries per passer-by at the store's aisle counter."""
        return self.visitors_in / self.passers_by if self.passers_by > 0 else None


FootfallOutput = RollupRow | AreaRow | AreaDay


class RollupBatch(Record, tag="footfall_rollups", frozen=True):
    """The roll-up rows one step of the agent emits (a closed interval's, or one event's late rows), as one message.

    About fifty rows close each minute: a message apiece cost more than the rows themselves.
    """

    rows: list[RollupRow]


class AreaBatch(Record, tag="area_occupancies", frozen=True):
    """The area rows of the intervals one step of the agent closes, as one message."""

    rows: list[AreaRow]


class _Interval:
    """What one open interval has gathered: per counter [in, out, staff in, staff out], and sales per store."""

    __slots__ = ("counts", "transactions")

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}
        self.transactions: dict[str, int] = {}


class FootfallState:
    """One mall's footfall stream: open intervals, recently seen ticks, areas and staff badges."""

    __slots__ = ("areas", "badges", "closed_until", "counted", "next_reset", "now", "open", "sales", "uncounted_staff")

    def __init__(self) -> None:
        self.now = float("-inf")
        #: intervals starting before this are closed.
        self.closed_until = float("-inf")
        self.open: dict[float, _Interval] = {}
        #: counter -> the periods its ticks covered, kept ``dedup_horizon_s``.
        self.counted: dict[str, Ranges] = {}
        #: (counter, interval start) -> [in, out] staff passes its closed interval had no count for.
        self.uncounted_staff: dict[tuple[str, float], list[int]] = {}
        self.areas: dict[RowKey, AreaState] = {}
        self.badges = BadgeState()
        self.next_reset: float | None = None
        #: txn id -> time of the sales and voids counted, kept ``dedup_horizon_s``: a receipt delivered again counts once
        self.sales: dict[str, float] = {}


def apply_tick(
    state: FootfallState, tick: FootfallTick, now: float, layout: FootfallLayout
) -> tuple[FootfallState, list[FootfallOutput]]:
    """Count one tick once, in its own interval or as a late row; close the intervals ``now`` has passed."""
    ts = tick.ts.timestamp()
    bucket_s = layout.config.bucket_s
    start = (ts - tick.interval_s) // bucket_s * bucket_s
    counted = state.counted.get(tick.counter_id)
    if counted is None:
        counted = state.counted[tick.counter_id] = []
    if covered(counted, ts - tick.interval_s, ts):
        return state, advance(state, now, layout)
    cover(counted, ts - tick.interval_s, ts)
    if tick.counter_id in layout.staff_only:
        counts = (tick.count_in, tick.count_out, tick.count_in, tick.count_out)
    else:
        counts = (tick.count_in, tick.count_out, 0, 0)
    return state, _add_counts(state, layout, start, tick.counter_id, counts) + advance(state, now, layout)


def apply_badge_read(
    state: FootfallState, read: RfidRead, now: float, layout: FootfallLayout
) -> tuple[FootfallState, list[FootfallOutput]]:
    """A staff badge passing a counted door takes one person off that counter's visitors, in its interval."""
    passed = staff_pass(state.badges, layout, read)
    outputs = []
    if passed:
        counter, inbound = passed
        start = read.ts.timestamp() // layout.config.bucket_s * layout.config.bucket_s
        outputs = _add_counts(state, layout, start, counter, (0, 0, 1, 0) if inbound else (0, 0, 0, 1))
    return state, outputs + advance(state, now, layout)


def apply_transaction(
    state: FootfallState, txn: PosTransaction, now: float, layout: FootfallLayout
) -> tuple[FootfallState, list[FootfallOutput]]:
    """Join a receipt to its store's interval: +1 for a sale, -1 for a void; returns are not transactions."""
    change = {"sale": 1, "void": -1}.get(txn.kind, 0)
    outputs = []
    if change and txn.txn_id not in state.sales:
        state.sales[txn.txn_id] = txn.ts.timestamp()
        bucket_s = layout.config.bucket_s
        start = txn.ts.timestamp() // bucket_s * bucket_s
        if start >= state.closed_until:
            sales = _interval(state, start).transactions
            sales[txn.store_id] = sales.get(txn.store_id, 0) + change
        else:
            outputs = _rows(layout, start, {}, {txn.store_id: change}, late=True)
    return state, outputs + advance(state, now, layout)


def apply_event(
    state: FootfallState, event: FootfallTick | RfidRead | PosTransaction, now: float, layout: FootfallLayout
) -> tuple[FootfallState, list[FootfallOutput]]:
    """Any event the footfall agent consumes, by type."""
    if isinstance(event, FootfallTick):
        return apply_tick(state, event, now, layout)
    if isinstance(event, RfidRead):
        return apply_badge_read(state, event, now, layout)
    return apply_transaction(state, event, now, layout)


def advance(state: FootfallState, now: float, layout: FootfallLayout) -> list[FootfallOutput]:
    """Move the event-time clock to ``now`` and close every interval it has passed by the allowed lateness."""
    if now <= state.now:
        return []
    state.now = now
    bucket_s = layout.config.bucket_s
    closed_until = (now - layout.config.allowed_lateness_s) // bucket_s * bucket_s
    if closed_until <= state.closed_until:
        return []
    state.closed_until = closed_until
    outputs: list[FootfallOutput] = []
    for start in sorted(start for start in state.open if start < closed_until):
        outputs += _close(state, layout, start, state.open.pop(start))
    forget = now - layout.config.dedup_horizon_s
    for counted in state.counted.values():
        forget_before(counted, forget)
    _forget_before(state.uncounted_staff, forget, lambda key: key[1])
    _forget_before(state.sales, forget, state.sales.__getitem__)
    return outputs


K = TypeVar("K")


def _forget_before(memory: dict[K, Any], forget: float, start_of: Callable[[K], float]) -> None:
    """Drop what is kept for intervals before ``forget``, oldest first: entries are added mostly in time order.

    An entry added late sits behind younger ones and goes once they have gone.
    """
    while memory:
        oldest = next(iter(memory))
        if start_of(oldest) >= forget:
            return
        del memory[oldest]


def floor_attraction(rows: Iterable[RollupRow]) -> dict[str, float]:
    """Each floor's entries as a share of the mall's entries, over the rows given."""
    floors: dict[str, int] = {}
    mall = 0
    for row in rows:
        if row.level == "floor":
            floors[row.key] = floors.get(row.key, 0) + row.visitors_in
        elif row.level == "mall":
            mall += row.visitors_in
    return {floor: entries / mall for floor, entries in floors.items()} if mall else {}


def _interval(state: FootfallState, start: float) -> _Interval:
    interval = state.open.get(start)
    if interval is None:
        interval = state.open[start] = _Interval()
    return interval


def _add_counts(
    state: FootfallState, layout: FootfallLayout, start: float, counter: str, counts: tuple[int, int, int, int]
) -> list[RollupRow]:
    """Into the open interval, or straight out as late rows that also move the occupancy now."""
    if start >= state.closed_until:
        gathered = _interval(state, start).counts
        total = gathered.get(counter)
        if total is None:
            gathered[counter] = list(counts)
        else:
            for field, n in enumerate(counts):
                total[field] += n
        return []
    late = list(counts)
    waiting = state.uncounted_staff.get((counter, start))
    if waiting:
        for staff, people in ((STAFF_IN, IN), (STAFF_OUT, OUT)):
            taken = min(waiting[staff - STAFF_IN], late[people] - late[staff])
            late[staff] += taken
            waiting[staff - STAFF_IN] -= taken
    rows = _rows(layout, start, {counter: late}, {}, late=True)
    for row in rows:
        area = state.areas.get((row.level, row.key))
        if area is not None:
            add_flows(area, row.visitors_in, row.visitors_out)
    return rows


def _rows(
    layout: FootfallLayout, start: float, counts: dict[str, list[int]], transactions: dict[str, int], late: bool
) -> list[RollupRow]:
    """Every row the counters' and tills' figures add to."""
    sums: dict[RowKey, list[int]] = {}
    for counter, (people_in, people_out, staff_in, staff_out) in counts.items():
        for key in layout.targets_of(counter):
            row = sums.get(key)
            if row is None:
                row = sums[key] = [0] * 6
            row[0] += people_in - staff_in
            row[1] += people_out - staff_out
            row[2] += staff_in
            row[3] += staff_out
        store = layout.aisle_of.get(counter)
        if store:
            sums.setdefault(store, [0] * 6)[5] += people_in + people_out
    for store_id, sales in transactions.items():
        for key in (("store", store_id), ("mall", layout.mall_id)):
            sums.setdefault(key, [0] * 6)[4] += sales
    begins = _local(layout, start)
    # figures are in RollupRow's field order: visitors in, out, staff in, out, transactions, passers-by
    return [
        RollupRow(
            layout.mall_id, level, key, begins, layout.config.bucket_s, v_in, v_out, s_in, s_out, txns, passers, late
        )
        for (level, key), (v_in, v_out, s_in, s_out, txns, passers) in sums.items()
    ]


def _close(state: FootfallState, layout: FootfallLayout, start: float, interval: _Interval) -> list[FootfallOutput]:
    """Emit an interval's rows, move each area's occupancy on, and reconcile the areas when the mall empties."""
    for counter, figures in interval.counts.items():
        uncounted = [max(0, figures[STAFF_IN] - figures[IN]), max(0, figures[STAFF_OUT] - figures[OUT])]
        if any(uncounted):
            state.uncounted_staff[(counter, start)] = uncounted
            figures[STAFF_IN] -= uncounted[0]
            figures[STAFF_OUT] -= uncounted[1]
    rows = _rows(layout, start, interval.counts, interval.transactions, late=False)
    flows = {(row.level, row.key): row for row in rows}
    end = start + layout.config.bucket_s
    resets = _reset_due(state, layout, start, end)
    begins = rows[0].start if rows else _local(layout, start)
    outputs: list[FootfallOutput] = list(rows)
    for key in layout.areas:
        area = state.areas.get(key)
        if area is None:
            area = state.areas[key] = AreaState()
        row = flows.get(key)
        departures, dwell = close_interval(
            area, start, end, row.visitors_in if row else 0, row.visitors_out if row else 0
        )
        if resets:
            outputs.append(
                reconcile(
                    area,
                    layout.mall_id,
                    key,
                    _local(layout, end),
                    layout.config.drift_memory,
                    layout.config.min_day_visitors,
                )
            )
        size = layout.area_m2.get(key)
        outputs.append(
            AreaRow(
                mall_id=layout.mall_id,
                level=key[0],
                key=key[1],
                start=begins,
                interval_s=layout.config.bucket_s,
                occupancy=round(area.occupancy),
                occupancy_uncorrected=area.uncorrected,
                density=area.occupancy / size if size else None,
                departures=departures,
                dwell_s=dwell,
            )
        )
    return outputs


def _reset_due(state: FootfallState, layout: FootfallLayout, start: float, end: float) -> bool:
    """Whether the interval ending at ``end`` reaches the time the mall empties."""
    empties_at = layout.config.empties_at
    if empties_at is None:
        return False
    if state.next_reset is None:
        state.next_reset = _empties_after(layout, empties_at, start)
    if end < state.next_reset:
        return False
    state.next_reset = _empties_after(layout, empties_at, end)
    return True


def _empties_after(layout: FootfallLayout, empties_at: dt.time, moment: float) -> float:
    """The first time after ``moment`` that the mall is empty (at ``empties_at``), by its local clock."""
    day = _local(layout, moment).date()
    empties = dt.datetime.combine(day, empties_at, layout.timezone)
    if empties.timestamp() <= moment:
        empties = dt.datetime.combine(day + dt.timedelta(days=1), empties_at, layout.timezone)
    return empties.timestamp()


def _local(layout: FootfallLayout, moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, layout.timezone)
