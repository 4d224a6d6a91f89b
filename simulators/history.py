"""Months of real history for the hub: receipts, counter ticks and car-park gate reads, with their ground truth.

Three scenarios, each a JSON-lines file ``mallstream replay`` takes and a ``<name>.truth.json``:

* ``purchases``: 18 months of till receipts of 25,000 members. Members buy as BG/NBD says
  (:mod:`.purchases`: gaps, and dropouts who stop buying for good), sale days add bursts, and some
  sales are partly returned days later. Truth: each member's BG/NBD inputs (x, t_x, T in days),
  sales, returns and net spend in cents; receipts per business day.
* ``counters``: a year of counter ticks from 24 counters, half hourly and half every 5 minutes,
  stamped at the interval's end; counters go dark for hours or days, sale days are busier, and a
  fifth of the ticks come without ``mall_id``, as direct feeds send them. Truth: people in and out
  per counter per (UTC) hour and per local day, of the ticks sent.
* ``parking``: three months of 30 car parks, over 2,000,000 gate reads. Cars stay minutes,
  overnight or days; a few entries are never read (the exit ends a stay with no entry and leaves
  occupancy as it is, as the hub does) and a few reads come twice within seconds (one pass).
  Truth: occupancy per car park at each local day's end, stays (count, with an entry, total
  duration), entries and exits per day.

``size`` scales the number of members, counters or car parks and the days alike by its square
root, so events scale with ``size``. The history ends on ``end`` (by default 30 days before
today) and is written a day at a time, vectorised with numpy; the truth is counted here from the
same arrays, independently of the hub's code.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from mallstream.settings import Mall

from .mallday import TENDER_TYPES
from .pos import CATALOGUE
from .purchases import PurchaseSimulation, member_id, simulate

SCENARIOS = ("purchases", "counters", "parking")

#: Full size (``size`` 1.0) of each scenario: (members, counters or car parks; days).
FULL_SIZE = {"purchases": (25_000, 548), "counters": (24, 365), "parking": (30, 90)}
#: The least of each, whatever the size: (members, counters or car parks; days).
LEAST_SIZE = {"purchases": (50, 7), "counters": (2, 2), "parking": (2, 2)}

#: Sales in the Chinese retail calendar: (month, day).
SALE_DAYS = ((1, 1), (3, 8), (5, 1), (6, 18), (10, 1), (11, 11), (12, 12))
SALE_DAY_BUYERS = 0.3
RETURN_SHARE = 0.03
RETURN_WITHIN_DAYS = 14

#: Ticks that come without mall_id, as a counter's direct feed sends them.
TICKS_WITHOUT_MALL_SHARE = 0.2
#: Relative people per local hour (index 0 = 00:00-01:00): night traffic is staff and cleaners.
COUNTER_CURVE = np.array(
    (
        0.01,
        0.01,
        0.01,
        0.01,
        0.01,
        0.01,
        0.02,
        0.05,
        0.15,
        0.35,
        0.6,
        0.85,
        1.2,
        1.1,
        0.85,
        0.85,
        0.95,
        1.1,
        1.4,
        1.3,
        1.0,
        0.6,
        0.25,
        0.05,
    )
)
OUTAGES_PER_YEAR = 4
OUTAGE_MEAN_HOURS = 12.0

STAYS_PER_PARK_DAY = 380
MISSED_ENTRY_SHARE = 0.003
DOUBLE_READ_SHARE = 0.005
OVERNIGHT_SHARE = 0.07
MULTI_DAY_SHARE = 0.01
#: A plate is used again only this long after its last exit (ms), so no read looks like a repeat of another.
PLATE_REST_MS = 300_000
PROVINCES = "沪苏浙皖京粤鲁豫"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

DAY_MS = 86_400_000


@dataclass(frozen=True)
class History:
    """The mall the history belongs to, how big it is, its seed and its last day."""

    mall: Mall
    size: float = 1.0
    seed: int = 7
    end: dt.date = field(default_factory=lambda: dt.date.today() - dt.timedelta(days=30))

    def scaled(self, scenario: str) -> tuple[int, int]:
        """(members, counters or car parks; days) of a scenario at this size."""
        (entities, days), (least_entities, least_days) = FULL_SIZE[scenario], LEAST_SIZE[scenario]
        factor = math.sqrt(self.size)
        return max(least_entities, round(entities * factor)), max(least_days, round(days * factor))

    def days(self, scenario: str) -> list[dt.date]:
        count = self.scaled(scenario)[1]
        return [self.end - dt.timedelta(days=count - 1 - i) for i in range(count)]

    def rng(self, scenario: str) -> np.random.Generator:
        """A random stream of the scenario's own, so changing one scenario never reshuffles another."""
        return np.random.default_rng([self.seed, SCENARIOS.index(scenario)])

    def day_start_ms(self, day: dt.date) -> int:
        """The local midnight that starts ``day``, in ms since the epoch."""
        return int(dt.datetime.combine(day, dt.time(), ZoneInfo(self.mall.timezone)).timestamp() * 1000)

    def is_sale_day(self, day: dt.date, scenario: str) -> bool:
        """A calendar sale, or the mall's anniversary sale half-way through the scenario (so short ones have one)."""
        return (day.month, day.day) in SALE_DAYS or day == self.end - dt.timedelta(days=self.scaled(scenario)[1] // 2)


def counter_ids(history: History) -> list[str]:
    return [f"C-H{i + 1:02d}" for i in range(history.scaled("counters")[0])]


def counter_interval_s(index: int) -> int:
    """Every other counter reports each 5 minutes, the rest hourly."""
    return 300 if index % 2 else 3600


def car_park_ids(history: History) -> list[str]:
    return [f"P-H{i + 1:02d}" for i in range(history.scaled("parking")[0])]


def gate_id(car_park: str, direction: str) -> str:
    return f"G-{car_park[2:]}-{'in' if direction == 'entry' else 'out'}"


def history_config(base: dict[str, Any], history: History) -> dict[str, Any]:
    """The config ``base`` (as read from YAML) with the scenarios' counters and car parks added to the history's mall.

    Counters watch the mall's entrances, zones and stores in turn; every car park has an entry and an exit gate.
    """
    config = copy.deepcopy(base)
    mall = next(m for m in config["malls"] if m["id"] == history.mall.id)
    places = [p.id for p in (*history.mall.entrances, *history.mall.zones, *history.mall.stores)]
    if not places:
        raise ValueError(f"mall {history.mall.id} has no entrance, zone or store for the counters to watch")
    mall["people_counters"] = [c for c in mall.get("people_counters", []) if not c["id"].startswith("C-H")] + [
        {"id": counter, "place": places[i % len(places)]} for i, counter in enumerate(counter_ids(history))
    ]
    mall["car_parks"] = [p for p in mall.get("car_parks", []) if not p["id"].startswith("P-H")] + [
        {
            "id": park,
            "capacity": _capacity(i),
            "gates": [{"id": gate_id(park, way), "place": park, "direction": way} for way in ("entry", "exit")],
        }
        for i, park in enumerate(car_park_ids(history))
    ]
    return config


def _capacity(index: int) -> int:
    return 300 + 50 * (index % 5)


def _park_demand(index: int) -> float:
    return 0.7 + 0.15 * (index % 5)


@dataclass(frozen=True)
class Recorded:
    events: int
    path: Path
    truth_path: Path


def truth_path(recording: Path) -> Path:
    return recording.with_name(recording.name.removesuffix(".jsonl") + ".truth.json")


def record(history: History, scenario: str, directory: Path, progress: bool = True) -> Recorded:
    """Write ``<scenario>.jsonl`` and ``<scenario>.truth.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scenario}.jsonl"
    days = history.days(scenario)
    with path.open("w", encoding="utf-8") as out, tqdm(days, unit="day", desc=scenario, disable=not progress) as bar:
        events, truth = WRITERS[scenario](history, bar, out)
    truth = {
        "scenario": scenario,
        "mall_id": history.mall.id,
        "timezone": history.mall.timezone,
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "events": events,
        **truth,
    }
    truth_path(path).write_text(json.dumps(truth, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return Recorded(events, path, truth_path(path))


def _utc_stamps(ms: NDArray[np.int64]) -> NDArray[np.str_]:
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC")


def _money(cents: int) -> str:
    """Cents as an exact JSON number of currency units."""
    return f"{cents // 100}.{cents % 100:02d}"


def _clock(second: int) -> str:
    return f"{second // 3600:02d}:{second % 3600 // 60:02d}:{second % 60:02d}"


@dataclass(frozen=True)
class _Sale:
    """A sale whose first line is to come back: what the return needs of it."""

    txn_id: str
    member: int
    store: str
    line: str
    cents: int


@dataclass(frozen=True)
class _Day:
    """A business day as receipts write it: the date and the mall's UTC offset that day (``+08:00``)."""

    date: dt.date
    offset: str

    @classmethod
    def of(cls, date: dt.date, zone: ZoneInfo) -> _Day:
        seconds = int(dt.datetime.combine(date, dt.time(12), zone).utcoffset().total_seconds())  # type: ignore[union-attr]
        return cls(date, f"{'+' if seconds >= 0 else '-'}{abs(seconds) // 3600:02d}:{abs(seconds) % 3600 // 60:02d}")


def _receipt(
    txn_id: str,
    kind: str,
    store: str,
    till: str,
    seq: int,
    day: _Day,
    second: int,
    member: int,
    lines: list[str],
    tender: str,
    cents: int,
    mall_id: str,
    original_txn_id: str | None = None,
) -> str:
    """One receipt as a JSON line (``docs/events.md``), paid in full by one tender."""
    original = f',"original_txn_id":"{original_txn_id}"' if original_txn_id else ""
    return (
        f'{{"type":"pos_transaction","txn_id":"{txn_id}","store_id":"{store}","workstation_id":"{till}",'
        f'"seq":{seq},"ts":"{day.date}T{_clock(second)}{day.offset}","business_day":"{day.date}",'
        f'"kind":"{kind}"{original},"member_id":"{member_id(member)}","lines":[{",".join(lines)}],'
        f'"tenders":[{{"type":"{tender}","amount":{_money(cents)}}}],"total":{_money(cents)},'
        f'"mall_id":"{mall_id}"}}'
    )


# -- purchases -----------------------------------------------------------------------------------

#: (category, brand, lowest cents, highest cents) of the POS catalogue.
_BRANDS = [
    (category, brand, int(low * 100), int(high * 100))
    for category, brands, (low, high) in CATALOGUE
    for brand in brands
]


def _purchase_days(history: History, rng: np.random.Generator) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(member, day offset) of every purchase day, sorted by day: BG/NBD histories plus sale-day bursts."""
    members, days = history.scaled("purchases")
    spec = PurchaseSimulation(
        members=members,
        days=days,
        joining_days=max(1, days * 2 // 3),
        start=history.days("purchases")[0],
        seed=int(rng.integers(1 << 31)),
    )
    simulated = simulate(spec)
    member = np.repeat(np.arange(members), [len(d) for d in simulated.purchase_days])
    day = np.concatenate(simulated.purchase_days)
    first = np.array([d[0] for d in simulated.purchase_days])
    bursts_m, bursts_d = [member], [day]
    for offset, date in enumerate(history.days("purchases")):
        if history.is_sale_day(date, "purchases"):
            # members who joined and have not dropped out yet come to the sale
            alive = (first <= offset) & (simulated.dropout_day > offset)
            buyers = np.flatnonzero(alive & (rng.random(members) < SALE_DAY_BUYERS))
            bursts_m.append(buyers)
            bursts_d.append(np.full(len(buyers), offset))
    pairs = np.unique(np.column_stack([np.concatenate(bursts_d), np.concatenate(bursts_m)]), axis=0)
    return pairs[:, 1], pairs[:, 0]


def _write_purchases(history: History, days: Iterator[dt.date], out: IO[str]) -> tuple[int, dict]:
    rng = history.rng("purchases")
    members_of, days_of = _purchase_days(history, rng)
    members = history.scaled("purchases")[0]
    stores = [s.id for s in history.mall.stores]
    if not stores:
        raise ValueError(f"mall {history.mall.id} has no stores for the tills")
    favourite = rng.integers(len(_BRANDS), size=members)
    zone = ZoneInfo(history.mall.timezone)
    spend = np.zeros(members, dtype=np.int64)
    sales = np.zeros(members, dtype=np.int64)
    returns = np.zeros(members, dtype=np.int64)
    per_day: dict[str, dict[str, int]] = {}
    pending_returns: dict[int, list[_Sale]] = {}
    bounds = np.searchsorted(days_of, np.arange(len(history.days("purchases")) + 1))
    seq = 0
    for offset, day in enumerate(days):
        buyers = members_of[bounds[offset] : bounds[offset + 1]]
        business_day = _Day.of(day, zone)
        receipts: list[tuple[int, str]] = []
        for sale in pending_returns.pop(offset, []):  # at the till of the sale, by the member who bought
            second = int(rng.integers(10 * 3600, 22 * 3600))
            seq += 1
            receipts.append(
                (
                    second,
                    _receipt(
                        f"H{day:%Y%m%d}-R{seq:07d}",
                        "return",
                        sale.store,
                        f"{sale.store}-T1",
                        seq,
                        business_day,
                        second,
                        sale.member,
                        [sale.line],
                        "refund",
                        sale.cents,
                        history.mall.id,
                        original_txn_id=sale.txn_id,
                    ),
                )
            )
            returns[sale.member] += 1
            spend[sale.member] -= sale.cents
        count = len(buyers)
        seconds = rng.integers(10 * 3600, 22 * 3600, size=count)
        n_lines = rng.integers(1, 4, size=count)
        brand = np.where(
            rng.random((count, 3)) < 0.5, favourite[buyers][:, None], rng.integers(len(_BRANDS), size=(count, 3))
        )
        fraction, qty = rng.random((count, 3)), rng.integers(1, 3, size=(count, 3))
        store_of, till_of = rng.integers(len(stores), size=count), rng.integers(1, 4, size=count)
        tender_of = rng.integers(len(TENDER_TYPES), size=count)
        returned = rng.random(count) < RETURN_SHARE
        return_after = rng.integers(1, RETURN_WITHIN_DAYS + 1, size=count)
        for i, member in enumerate(buyers.tolist()):
            seq += 1
            lines, total, first_line_cents = [], 0, 0
            for j in range(int(n_lines[i])):
                category, name, low, high = _BRANDS[int(brand[i, j])]
                unit = low + int(fraction[i, j] * (high - low))
                amount = unit * int(qty[i, j])
                total += amount
                first_line_cents = first_line_cents if j else amount
                lines.append(
                    f'{{"sku":"{name[:3].upper()}-{int(brand[i, j]):02d}{j}","qty":{int(qty[i, j])},'
                    f'"unit_price":{_money(unit)},"amount":{_money(amount)},"category":"{category}",'
                    f'"brand":"{name}"}}'
                )
            store, second = stores[int(store_of[i])], int(seconds[i])
            txn_id = f"H{day:%Y%m%d}-{seq:07d}"
            receipts.append(
                (
                    second,
                    _receipt(
                        txn_id,
                        "sale",
                        store,
                        f"{store}-T{int(till_of[i])}",
                        seq,
                        business_day,
                        second,
                        member,
                        lines,
                        TENDER_TYPES[int(tender_of[i])],
                        total,
                        history.mall.id,
                    ),
                )
            )
            sales[member] += 1
            spend[member] += total
            if returned[i]:  # the first line comes back some days later
                pending_returns.setdefault(offset + int(return_after[i]), []).append(
                    _Sale(txn_id, member, store, lines[0], first_line_cents)
                )
        receipts.sort(key=lambda receipt: receipt[0])
        out.writelines(line + "\n" for _, line in receipts)
        per_day[day.isoformat()] = {"sales": count, "returns": len(receipts) - count}
    as_of = history.end + dt.timedelta(days=1)
    start = history.days("purchases")[0]
    truth_members = {}
    order = np.argsort(members_of, kind="stable")
    by_member = np.split(days_of[order], np.searchsorted(members_of[order], np.arange(1, members)))
    for member, purchase_days in enumerate(by_member):
        if not len(purchase_days):
            continue
        first, last = int(purchase_days[0]), int(purchase_days[-1])
        truth_members[member_id(member)] = {
            "first_purchase": (start + dt.timedelta(days=first)).isoformat(),
            "last_purchase": (start + dt.timedelta(days=last)).isoformat(),
            "x": len(purchase_days) - 1,
            "t_x": last - first,
            "T": (as_of - start).days - first,
            "sales": int(sales[member]),
            "returns": int(returns[member]),
            "spend_cents": int(spend[member]),
        }
    events = sum(figures["sales"] + figures["returns"] for figures in per_day.values())
    return events, {"as_of": as_of.isoformat(), "members": truth_members, "receipts_per_day": per_day}


# -- counters ------------------------------------------------------------------------------------


def _outages(history: History, rng: np.random.Generator, counters: int) -> list[NDArray[np.int64]]:
    """Per counter, (start, end) ms of the spans it sends nothing: a few a year, hours to days long."""
    days = history.days("counters")
    first, last = history.day_start_ms(days[0]), history.day_start_ms(days[-1]) + DAY_MS
    spans = []
    for _ in range(counters):
        count = rng.poisson(OUTAGES_PER_YEAR * len(days) / 365) + (1 if len(days) >= 7 else 0)
        starts = rng.integers(first, last, size=count)
        lengths = (rng.exponential(OUTAGE_MEAN_HOURS, size=count).clip(1, 24 * 5) * 3_600_000).astype(np.int64)
        spans.append(np.column_stack([starts, starts + lengths]))
    return spans


def _write_counters(history: History, days: Iterator[dt.date], out: IO[str]) -> tuple[int, dict]:
    rng = history.rng("counters")
    ids = counter_ids(history)
    intervals = np.array([counter_interval_s(i) for i in range(len(ids))])
    peak_per_hour = rng.uniform(150, 1500, size=len(ids))
    outages = _outages(history, rng, len(ids))
    hourly: dict[str, dict[str, list[int]]] = {counter: {} for counter in ids}
    daily: dict[str, dict[str, list[int]]] = {counter: {} for counter in ids}
    events = 0
    mall = f',"mall_id":"{history.mall.id}"'
    for day in days:
        start = history.day_start_ms(day)
        factor = (1.4 if day.weekday() >= 5 else 1.0) * (2.5 if history.is_sale_day(day, "counters") else 1.0)
        per_counter = DAY_MS // (intervals * 1000)
        counter = np.repeat(np.arange(len(ids)), per_counter)
        interval_ms = intervals[counter] * 1000
        begins = (
            start
            + (np.arange(len(counter)) - np.repeat(np.cumsum(per_counter) - per_counter, per_counter)) * interval_ms
        )
        ends = begins + interval_ms
        # hours since local midnight: the traffic curve's hour (a day of a clock change is an hour off, no matter)
        local_hour = ((begins - start) // 3_600_000) % 24
        share = interval_ms / 3_600_000
        people_in = rng.poisson(peak_per_hour[counter] * COUNTER_CURVE[local_hour] * factor * share)
        # people leave about an hour after they came
        people_out = rng.poisson(peak_per_hour[counter] * COUNTER_CURVE[(local_hour - 1) % 24] * factor * share)
        sent = np.ones(len(counter), dtype=bool)
        for index, spans in enumerate(outages):
            mine = counter == index
            for down, up in spans:
                sent[mine & (ends > down) & (ends <= up)] = False
        order = np.flatnonzero(sent)[np.argsort(ends[sent], kind="stable")]
        stamps = _utc_stamps(ends[order])
        without_mall = rng.random(len(order)) < TICKS_WITHOUT_MALL_SHARE
        out.writelines(
            f'{{"type":"footfall_tick","counter_id":"{ids[c]}","ts":"{ts}","in":{i},"out":{o},"interval_s":{s}'
            f"{'' if bare else mall}}}\n"
            for c, ts, i, o, s, bare in zip(
                counter[order].tolist(),
                stamps.tolist(),
                people_in[order].tolist(),
                people_out[order].tolist(),
                intervals[counter[order]].tolist(),
                without_mall.tolist(),
                strict=True,
            )
        )
        events += len(order)
        hour_ms = begins[order] // 3_600_000 * 3_600_000
        keys, inverse = np.unique(np.column_stack([counter[order], hour_ms]), axis=0, return_inverse=True)
        flows_in = np.bincount(inverse.ravel(), weights=people_in[order], minlength=len(keys)).astype(np.int64)
        flows_out = np.bincount(inverse.ravel(), weights=people_out[order], minlength=len(keys)).astype(np.int64)
        hours = _utc_stamps(keys[:, 1])
        for (c, _), hour, i, o in zip(
            keys.tolist(), hours.tolist(), flows_in.tolist(), flows_out.tolist(), strict=True
        ):
            hourly[ids[c]][hour[:13] + ":00:00Z"] = [i, o]
        for c in np.unique(counter[order]).tolist():
            mine = counter[order] == c
            daily[ids[c]][day.isoformat()] = [int(people_in[order][mine].sum()), int(people_out[order][mine].sum())]
    return events, {
        "counters": {c: {"interval_s": int(s)} for c, s in zip(ids, intervals.tolist(), strict=True)},
        "hourly": hourly,
        "daily": daily,
    }


# -- parking -------------------------------------------------------------------------------------


def _plate(code: int) -> str:
    """A plate like 沪A01234; each code has its own."""
    return (
        f"{PROVINCES[code % len(PROVINCES)]}{PLATE_LETTERS[code // len(PROVINCES) % len(PLATE_LETTERS)]}"
        f"{code // (len(PROVINCES) * len(PLATE_LETTERS)):05d}"
    )


def _unique_per_park(park: NDArray[np.int64], ms: NDArray[np.int64]) -> NDArray[np.int64]:
    """The times moved on by 2 ms where a car park has two reads in the same ms, so the order of its reads is
    never left open (the parity, which tells entries from exits, stays)."""
    ms = ms.copy()
    while True:
        order = np.lexsort((ms, park))
        clash = np.r_[False, (park[order][1:] == park[order][:-1]) & (ms[order][1:] == ms[order][:-1])]
        if not clash.any():
            return ms
        ms[order[clash]] += 2


def _plates(
    park: NDArray[np.int64],
    entry: NDArray[np.int64],
    leave: NDArray[np.int64],
    busy_until: NDArray[np.int64],
    pool: int,
    next_one_off: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.int64], int]:
    """Plate codes for the stays: regulars of each car park's pool, a car never in two stays at once (nor back
    within ``PLATE_REST_MS``); where a regular is busy, a one-off visitor comes instead."""
    plate = park * pool + rng.integers(pool, size=len(park))
    regular = np.ones(len(park), dtype=bool)
    while True:
        kept = np.flatnonzero(regular)
        order = kept[np.lexsort((entry[kept], plate[kept]))]
        codes, starts, ends = plate[order], entry[order], leave[order]
        same = np.r_[False, codes[1:] == codes[:-1]]
        before = np.where(same, np.r_[0, ends[:-1]], busy_until[codes])
        clash = starts < before + PLATE_REST_MS
        if not clash.any():
            break
        regular[order[clash]] = False
    one_offs = np.flatnonzero(~regular)
    plate[one_offs] = next_one_off + np.arange(len(one_offs))
    np.maximum.at(busy_until, plate[regular], leave[regular])
    return plate, next_one_off + len(one_offs)


def _stay_lengths(rng: np.random.Generator, count: int) -> NDArray[np.int64]:
    """Stay lengths in ms (even): mostly a couple of hours, some overnight, a few for days."""
    hours = 1 / 6 + np.minimum(rng.lognormal(math.log(1.8), 0.7, count), 10)
    overnight = rng.random(count) < OVERNIGHT_SHARE
    hours[overnight] = rng.uniform(8, 40, overnight.sum())
    days = rng.random(count) < MULTI_DAY_SHARE
    hours[days] = rng.uniform(40, 96, days.sum())
    return (hours * 3_600_000).astype(np.int64) // 2 * 2


@dataclass
class _Exits:
    """Exits still to come: car park, time (odd ms), plate code, entry time (-1: the entry was never read)."""

    park: NDArray[np.int64]
    at: NDArray[np.int64]
    plate: NDArray[np.int64]
    entry: NDArray[np.int64]

    def add(self, other: _Exits) -> _Exits:
        return _Exits(
            *(np.concatenate([getattr(self, f), getattr(other, f)]) for f in ("park", "at", "plate", "entry"))
        )

    def take(self, mask: NDArray[np.bool_]) -> _Exits:
        return _Exits(self.park[mask], self.at[mask], self.plate[mask], self.entry[mask])


def _write_parking(history: History, days: Iterator[dt.date], out: IO[str]) -> tuple[int, dict]:
    rng = history.rng("parking")
    parks = car_park_ids(history)
    demand = np.array([_park_demand(i) for i in range(len(parks))])
    pool = STAYS_PER_PARK_DAY * 8  # regulars: a car park sees the same cars again
    busy_until = np.zeros(len(parks) * pool, dtype=np.int64)
    next_one_off = len(parks) * pool
    empty = np.zeros(0, dtype=np.int64)
    pending = _Exits(empty, empty, empty, empty)
    inside = np.zeros(len(parks), dtype=np.int64)  # cars the hub counts in: their entry was read
    stays = np.zeros(len(parks), dtype=np.int64)
    stays_with_entry = np.zeros(len(parks), dtype=np.int64)
    duration_ms = np.zeros(len(parks), dtype=np.int64)
    per_day: dict[str, dict[str, dict[str, int]]] = {park: {} for park in parks}
    double_read_ms = min(30_000, int(history.mall.parking.repeat_read_s * 1000) // 2) // 2 * 2
    events = 0
    for day in days:
        start = history.day_start_ms(day)
        factor = (1.3 if day.weekday() >= 5 else 1.0) * (1.8 if history.is_sale_day(day, "parking") else 1.0)
        park = np.repeat(np.arange(len(parks)), rng.poisson(STAYS_PER_PARK_DAY * demand * factor))
        arrival_hours = 7 + 16.5 * rng.beta(2.5, 2.2, len(park))  # 07:00 to 23:30, busiest early afternoon
        entry = _unique_per_park(park, start + (arrival_hours * 3_600_000).astype(np.int64) // 2 * 2)
        leave = entry + _stay_lengths(rng, len(park)) + 1
        plate, next_one_off = _plates(park, entry, leave, busy_until, pool, next_one_off, rng)
        missed = rng.random(len(park)) < MISSED_ENTRY_SHARE
        pending = pending.add(_Exits(park, leave, plate, np.where(missed, -1, entry)))
        due = pending.at < start + DAY_MS
        exits, pending = pending.take(due), pending.take(~due)
        exits.at = _unique_per_park(exits.park, exits.at)

        seen = ~missed
        read_park = np.concatenate([park[seen], exits.park])
        read_at = np.concatenate([entry[seen], exits.at])
        read_plate = np.concatenate([plate[seen], exits.plate])
        is_exit = np.r_[np.zeros(seen.sum(), dtype=bool), np.ones(len(exits.park), dtype=bool)]
        twice = np.flatnonzero(rng.random(len(read_at)) < DOUBLE_READ_SHARE) if double_read_ms else empty
        again_at = read_at[twice] + 2 * rng.integers(500, double_read_ms // 2 + 1, size=len(twice))
        read_park, read_plate, is_exit = (np.concatenate([a, a[twice]]) for a in (read_park, read_plate, is_exit))
        read_at = np.concatenate([read_at, again_at])
        order = np.argsort(read_at, kind="stable")
        stamps = _utc_stamps(read_at[order])
        out.writelines(
            f'{{"type":"parking_event","gate_id":"{gate_id(parks[p], "exit" if x else "entry")}",'
            f'"car_park_id":"{parks[p]}","plate":"{_plate(c)}","direction":"{"exit" if x else "entry"}",'
            f'"ts":"{ts}","mall_id":"{history.mall.id}"}}\n'
            for p, c, x, ts in zip(
                read_park[order].tolist(),
                read_plate[order].tolist(),
                is_exit[order].tolist(),
                stamps.tolist(),
                strict=True,
            )
        )
        events += len(order)

        known = exits.entry >= 0
        n = len(parks)
        entries_today = np.bincount(park[seen], minlength=n)
        exits_today = np.bincount(exits.park, minlength=n)
        stays += exits_today
        stays_with_entry += np.bincount(exits.park[known], minlength=n)
        duration_ms += np.bincount(exits.park[known], weights=exits.at[known] - exits.entry[known], minlength=n).astype(
            np.int64
        )
        # an exit the 2 ms nudge pushed past midnight leaves after the day's end
        before_end = known & (exits.at < start + DAY_MS)
        inside += entries_today - np.bincount(exits.park[before_end], minlength=n)
        reads_today = np.bincount(read_park, minlength=n)
        for i, name in enumerate(parks):
            per_day[name][day.isoformat()] = {
                "entries": int(entries_today[i]),
                "exits": int(exits_today[i]),
                "reads": int(reads_today[i]),
                "occupancy_at_end": int(inside[i]),
            }
        inside -= np.bincount(exits.park[known & ~before_end], minlength=n)
    return events, {
        "car_parks": {
            name: {
                "stays": int(stays[i]),
                "stays_with_entry": int(stays_with_entry[i]),
                "duration_ms": int(duration_ms[i]),
                "still_inside": int(inside[i]),
                "days": per_day[name],
            }
            for i, name in enumerate(parks)
        }
    }


WRITERS: dict[str, Callable[[History, Iterator[dt.date], IO[str]], tuple[int, dict]]] = {
    "purchases": _write_purchases,
    "counters": _write_counters,
    "parking": _write_parking,
}
