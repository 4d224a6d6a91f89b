"""A simulated mall day: visitors, staff, VIP tags, tills and cars, with the ground truth beside it.

The world is drawn first, as numpy arrays (who arrives where and when, which stores
and zones they visit, how long they stay), so a 100,000-visitor day takes seconds.
The devices then report what they would have seen of it: people counters count the
door crossings, RFID readers read the VIPs' tags, tills ring up purchases, car-park
cameras read plates. Faults (duplicate reads, skewed clocks, late events, outages)
act only on that reporting, never on the world, so the ground truth of a faulty day
equals that of the same day without faults and a test can tell exactly what the hub
should have recovered.

Every aspect draws from its own random stream derived from the seed, so the day is
deterministic and turning one knob does not reshuffle the others.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import msgspec.structs
import numpy as np
from tqdm import tqdm

from mallstream.devices.normalise import clock_skew
from mallstream.settings import CarPark, Mall, Settings, Store
from mallstream.streams.records import (
    FootfallTick,
    InputEvent,
    ParkingEvent,
    PosLine,
    PosTransaction,
    RfidRead,
    Tender,
    encode,
)

from .pos import CATALOGUE

HOUR = 3600.0
MINUTE = 60.0

#: Relative arrivals per local hour (index 0 = 00:00-01:00); only opening hours are used.
WEEKDAY_CURVE = (0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0.4, 0.6, 0.9, 1.4, 1.2, 0.8, 0.8, 0.9, 1.1, 1.5, 1.4, 1.0, 0.6, 0.3, 0.1)
WEEKEND_CURVE = (0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0.5, 0.8, 1.1, 1.3, 1.4, 1.5, 1.5, 1.4, 1.3, 1.3, 1.1, 0.8, 0.5, 0.3, 0.1)
#: Commuters from the metro come after work.
METRO_CURVE = (0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0.3, 0.4, 0.6, 1.0, 0.9, 0.6, 0.6, 0.8, 1.3, 1.9, 1.6, 1.0, 0.6, 0.3, 0.1)

TENDER_TYPES = ("bank_card", "alipay", "wechat_pay", "cash")
TENDER_WEIGHTS = (3, 3, 3, 1)
PLATE_PROVINCES = ("沪", "苏", "浙", "皖")
PLATE_PROVINCE_WEIGHTS = (0.8, 0.1, 0.07, 0.03)
PLATE_SYMBOLS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on Chinese plates
PLATE_LETTERS = PLATE_SYMBOLS[10:]
EPC_PREFIX = "E2801160"
#: Staff badges carry the mall operator's own prefix, so the hub tells them from VIP cards.
STAFF_EPC_PREFIX = "E2801170"
#: Random streams, one per aspect: a new knob in one must not reshuffle another.
STREAMS = ("visitors", "staff", "rfid", "pos", "parking", "faults", "staff_badges")


@dataclass(frozen=True)
class Outage:
    """A device down over (start, end]: what it would send then is replayed at ``end`` or lost."""

    device_id: str
    start: dt.time
    end: dt.time
    backlog: bool = True


@dataclass(frozen=True)
class FaultKnobs:
    """How the devices misreport the day; all off by default."""

    duplicate_read_rate: float = 0.0
    clock_skew_s: Mapping[str, float] = field(default_factory=dict)
    late_event_rate: float = 0.0
    lateness_s: float = 300.0
    outages: tuple[Outage, ...] = ()
    #: counter id -> share of its exits it misses, spread evenly over the day (occupancy drift).
    undercount: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MallDay:
    """What a simulated day looks like. Shares are of all visitors; VIPs are members."""

    visitors: int = 20_000
    day: dt.date = dt.date(2026, 11, 23)
    seed: int = 7
    opening: dt.time = dt.time(10)
    closing: dt.time = dt.time(22)
    arrival_curve: tuple[float, ...] = WEEKDAY_CURVE
    entrance_curves: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    entrance_weights: Mapping[str, float] = field(default_factory=dict)
    parking_entrances: tuple[str, ...] = ()
    same_exit_share: float = 0.6
    stores_per_visit: float = 2.5
    zone_visit_share: float = 0.4
    vip_zones: tuple[str, ...] = ()
    vip_lounge_share: float = 0.6
    member_share: float = 0.3
    vip_share: float = 0.005
    member_pool: int = 500_000
    vip_pool: int = 5_000
    conversion: float = 0.18
    return_share: float = 0.03
    parking_share: float = 0.2
    staff: int = 200
    staff_entrances: tuple[str, ...] = ()
    staff_break_share: float = 0.5
    staff_excluding_counters: frozenset[str] = frozenset()
    staff_badges: bool = False
    reads_per_pass: float = 3.0
    antennas: int = 4
    tick_seconds: int = 60
    faults: FaultKnobs = FaultKnobs()


@dataclass
class GroundTruth:
    """What really happened, whatever the devices reported. Hours are local hour starts."""

    mall_id: str
    day: dt.date
    seed: int
    #: place id -> hour -> {"in": n, "out": n}, customers only.
    visitors: dict[str, dict[str, dict[str, int]]]
    #: the same for staff, whom the hub must deduct.
    staff: dict[str, dict[str, dict[str, int]]]
    vip_visits: list[dict]
    #: store id -> {"sales", "sales_total", "returns", "returns_total"}; totals as decimal strings.
    transactions: dict[str, dict[str, int | str]]
    parking_stays: list[dict]
    #: what the fault knobs did to the recording.
    faults: dict
    #: mean visit length in seconds: the mall under its id, and each store and zone visited.
    mean_dwell_s: dict[str, float] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_bytes(msgspec.json.format(msgspec.json.encode(self)))

    @classmethod
    def read(cls, path: Path) -> GroundTruth:
        return msgspec.json.decode(path.read_bytes(), type=cls)


@dataclass
class SimulatedDay:
    """The events in the order the hub receives them, and the truth behind them."""

    events: list[InputEvent]
    truth: GroundTruth


def truth_path(recording: Path) -> Path:
    """The ground truth lives beside the recording: ``<file>.truth.json``."""
    return recording.with_name(recording.name + ".truth.json")


def _seconds(moment: dt.time) -> float:
    return moment.hour * HOUR + moment.minute * MINUTE + moment.second


def _mentions(words: Iterable[str], *needles: str) -> bool:
    text = " ".join(words).lower().replace(" ", "")
    return any(needle in text for needle in needles)


@dataclass(frozen=True)
class _Layout:
    """The mall's places as array indexes: entrances first, then zones, then stores."""

    mall: Mall
    day: MallDay

    @property
    def place_ids(self) -> list[str]:
        return [e.id for e in self.mall.entrances] + [z.id for z in self.mall.zones] + [s.id for s in self.mall.stores]

    def place_index(self, place_id: str) -> int:
        """A place's index, or -1 for a place that is not an entrance, zone or store (nobody crosses it)."""
        ids = self.place_ids
        return ids.index(place_id) if place_id in ids else -1

    @property
    def first_zone(self) -> int:
        return len(self.mall.entrances)

    @property
    def first_store(self) -> int:
        return len(self.mall.entrances) + len(self.mall.zones)

    def entrance_weights(self) -> np.ndarray:
        weights = np.array([self.day.entrance_weights.get(e.id, 1.0) for e in self.mall.entrances])
        return weights / weights.sum()

    def parking_entrances(self) -> np.ndarray:
        """Drivers come up from the car park: the configured doors, else those named after it."""
        chosen = self.day.parking_entrances or [
            e.id for e in self.mall.entrances if _mentions((e.id, e.name), "carpark", "parking")
        ]
        return np.array([self.place_index(i) for i in chosen] or range(len(self.mall.entrances)))

    def staff_entrances(self) -> np.ndarray:
        return np.array([self.place_index(i) for i in self.day.staff_entrances] or range(len(self.mall.entrances)))

    def vip_zone_mask(self) -> np.ndarray:
        """Zones only VIPs enter: the configured ones, else those named VIP."""
        return np.array(
            [
                z.id in self.day.vip_zones if self.day.vip_zones else _mentions((z.id, z.name), "vip")
                for z in self.mall.zones
            ],
            dtype=bool,
        )

    def store_weights(self) -> np.ndarray:
        """Bigger stores draw more visits; a store without an area counts as an average one."""
        areas = [float(s.area_m2) if s.area_m2 else math.nan for s in self.mall.stores]
        known = [a for a in areas if not math.isnan(a)]
        default = sum(known) / len(known) if known else 1.0
        weights = np.array([default if math.isnan(a) else a for a in areas])
        return weights / weights.sum()


@dataclass
class _Crossings:
    """Everyone passing a door of a place: where, when, which way, and who."""

    place: np.ndarray
    time: np.ndarray
    inbound: np.ndarray
    staff: np.ndarray
    person: np.ndarray  # visitor index, or staff index for staff

    FIELDS = ("place", "time", "inbound", "staff", "person")

    @classmethod
    def join(cls, parts: list[_Crossings]) -> _Crossings:
        return cls(*(np.concatenate([getattr(part, name) for part in parts]) for name in cls.FIELDS))

    @classmethod
    def of(cls, place, time, inbound: bool, person, staff: bool = False) -> _Crossings:
        """Crossings all in one direction, by customers or by staff."""
        size = len(time)
        return cls(
            np.asarray(place, dtype=np.int64),
            np.asarray(time, dtype=float),
            np.full(size, inbound),
            np.full(size, staff),
            np.asarray(person, dtype=np.int64),
        )

    def only(self, mask: np.ndarray) -> _Crossings:
        return _Crossings(*(getattr(self, name)[mask] for name in self.FIELDS))


@dataclass
class _Visitors:
    entrance: np.ndarray
    exit_entrance: np.ndarray
    arrival: np.ndarray
    departure: np.ndarray
    drives: np.ndarray
    vip: np.ndarray
    member_number: np.ndarray  # 0 for visitors without a card
    stop_visitor: np.ndarray
    stop_place: np.ndarray
    stop_arrival: np.ndarray
    stop_departure: np.ndarray

    def crossings(self) -> _Crossings:
        everyone = np.arange(len(self.arrival))
        return _Crossings.join(
            [
                _Crossings.of(self.entrance, self.arrival, True, everyone),
                _Crossings.of(self.exit_entrance, self.departure, False, everyone),
                _Crossings.of(self.stop_place, self.stop_arrival, True, self.stop_visitor),
                _Crossings.of(self.stop_place, self.stop_departure, False, self.stop_visitor),
            ]
        )


def _arrival_density(curve: tuple[float, ...], opening: float, closing: float) -> tuple[np.ndarray, np.ndarray]:
    """The minutes of opening hours and their share of arrivals, the hourly curve interpolated."""
    minute_starts = np.arange(opening, closing, MINUTE)
    density = np.interp((minute_starts + MINUTE / 2) / HOUR, np.arange(24) + 0.5, curve)
    return minute_starts, density / density.sum()


def _arrival_times(
    curve: tuple[float, ...], opening: float, closing: float, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Arrival seconds after midnight, following the curve smoothly within opening hours."""
    minute_starts, share = _arrival_density(curve, opening, closing)
    starts = rng.choice(minute_starts, size=count, p=share)
    return starts + rng.random(count) * np.minimum(MINUTE, closing - starts)


def _lognormal(rng: np.random.Generator, median: np.ndarray | float, size: int, sigma: float = 0.7) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(size))


def _visitors(layout: _Layout, rng: np.random.Generator) -> _Visitors:
    day, mall = layout.day, layout.mall
    count, opening, closing = day.visitors, _seconds(day.opening), _seconds(day.closing)
    last_entry = closing - MINUTE  # a door a minute from closing lets nobody in
    entrances = len(mall.entrances)

    drives = rng.random(count) < (day.parking_share if mall.car_parks else 0.0)
    entrance = rng.choice(entrances, size=count, p=layout.entrance_weights())
    entrance[drives] = rng.choice(layout.parking_entrances(), size=int(drives.sum()))
    arrival = np.empty(count)
    for index, place in enumerate(mall.entrances):
        here = entrance == index
        curve = day.entrance_curves.get(place.id, day.arrival_curve)
        arrival[here] = _arrival_times(curve, opening, last_entry, int(here.sum()), rng)

    member = rng.random(count) < day.member_share
    vip = member & (rng.random(count) < day.vip_share / day.member_share)
    member_number = np.zeros(count, dtype=np.int64)
    member_number[vip] = rng.choice(day.vip_pool, size=int(vip.sum()), replace=False) + 1
    regular = member & ~vip
    member_number[regular] = (
        rng.choice(day.member_pool - day.vip_pool, size=int(regular.sum()), replace=False) + day.vip_pool + 1
    )

    # Stops: stores by weight (a revisit is allowed), zones by chance, VIP zones for VIPs only.
    store_visitor = np.repeat(np.arange(count), rng.poisson(day.stores_per_visit, count))
    store_place = layout.first_store + rng.choice(len(mall.stores), size=len(store_visitor), p=layout.store_weights())
    vip_zone = layout.vip_zone_mask()
    zone_share = np.where(vip_zone[None, :], np.where(vip[:, None], day.vip_lounge_share, 0.0), day.zone_visit_share)
    zone_visitor, zone_index = np.nonzero(rng.random((count, len(mall.zones))) < zone_share)
    stop_visitor = np.concatenate([store_visitor, zone_visitor])
    stop_place = np.concatenate([store_place, layout.first_zone + zone_index])
    order = np.lexsort((rng.random(len(stop_visitor)), stop_visitor))
    stop_visitor, stop_place = stop_visitor[order], stop_place[order]

    # Shoppers linger in stores, pass through zones, and VIPs settle in their lounge.
    median_dwell = np.full(len(layout.place_ids), 10 * MINUTE)
    median_dwell[layout.first_zone : layout.first_store] = np.where(vip_zone, 20 * MINUTE, 4 * MINUTE)
    median_dwell = median_dwell[stop_place]
    dwell = _lognormal(rng, median_dwell, len(stop_place))
    walk = rng.uniform(30, 240, len(stop_place))
    segment = walk + dwell
    before = np.cumsum(segment) - segment
    offset = before - before[np.searchsorted(stop_visitor, stop_visitor)]  # time since this visitor's first stop
    stop_arrival = arrival[stop_visitor] + offset + walk
    stop_departure = stop_arrival + dwell
    departure = arrival + np.bincount(stop_visitor, weights=segment, minlength=count) + rng.uniform(30, 240, count)

    # Everyone is out a second before closing: a visit that would run over is hurried through.
    hurry = np.minimum(1.0, (closing - 1 - arrival) / (departure - arrival))
    departure = arrival + (departure - arrival) * hurry
    stop_arrival = arrival[stop_visitor] + (stop_arrival - arrival[stop_visitor]) * hurry[stop_visitor]
    stop_departure = arrival[stop_visitor] + (stop_departure - arrival[stop_visitor]) * hurry[stop_visitor]

    leaves_elsewhere = ~drives & (rng.random(count) >= day.same_exit_share)
    exit_entrance = entrance.copy()
    exit_entrance[leaves_elsewhere] = rng.choice(
        entrances, size=int(leaves_elsewhere.sum()), p=layout.entrance_weights()
    )
    return _Visitors(
        entrance,
        exit_entrance,
        arrival,
        departure,
        drives,
        vip,
        member_number,
        stop_visitor,
        stop_place,
        stop_arrival,
        stop_departure,
    )


def _staff_crossings(layout: _Layout, rng: np.random.Generator) -> _Crossings:
    """Staff come in before opening, may pop out for a break, and leave after closing, via their store."""
    day, mall = layout.day, layout.mall
    count, opening, closing = day.staff, _seconds(day.opening), _seconds(day.closing)
    if not count:
        return _Crossings.of([], [], True, [], staff=True)
    door = rng.choice(layout.staff_entrances(), size=count)
    store = layout.first_store + rng.integers(len(mall.stores), size=count)
    walk = rng.uniform(MINUTE, 5 * MINUTE, count)
    start = opening - rng.uniform(15 * MINUTE, 75 * MINUTE, count)
    end = closing + rng.uniform(5 * MINUTE, 45 * MINUTE, count)
    breaks = rng.random(count) < day.staff_break_share
    break_out = opening + rng.uniform(0.3, 0.6, count) * (closing - opening)
    break_back = break_out + rng.uniform(15 * MINUTE, 45 * MINUTE, count)
    badge = np.arange(count)
    # (place, time at the door, inbound, who): doors at the entrance, then at the store.
    passes = [
        (door, start, True, slice(None)),
        (door, end + walk, False, slice(None)),
        (door, break_out + walk, False, breaks),
        (door, break_back, True, breaks),
        (store, start + walk, True, slice(None)),
        (store, end, False, slice(None)),
        (store, break_out, False, breaks),
        (store, break_back + walk, True, breaks),
    ]
    return _Crossings.join(
        [_Crossings.of(place[who], time[who], inbound, badge[who], staff=True) for place, time, inbound, who in passes]
    )


@dataclass(frozen=True)
class _Clock:
    """Seconds after local midnight of the day to aware datetimes."""

    midnight: dt.datetime

    def __call__(self, seconds: float) -> dt.datetime:
        return self.midnight + dt.timedelta(seconds=float(seconds))

    def hour(self, seconds: float) -> str:
        return self(seconds // HOUR * HOUR).isoformat()


def _per_hour(crossings: _Crossings, place_ids: list[str], clock: _Clock) -> dict[str, dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, dict[str, int]]] = {}
    hours = (crossings.time // HOUR).astype(np.int64)
    for (place, hour, inbound), n in Counter(
        zip(crossings.place.tolist(), hours.tolist(), crossings.inbound.tolist(), strict=False)
    ).items():
        by_hour = counts.setdefault(place_ids[place], {}).setdefault(clock.hour(hour * HOUR), {"in": 0, "out": 0})
        by_hour["in" if inbound else "out"] += n
    return {place: dict(sorted(by_hour.items())) for place, by_hour in sorted(counts.items())}


# Every simulated event as (true time in seconds, reporting device, record).
Timed = tuple[float, str, InputEvent]


def _missed(crossings: _Crossings, seen: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of the seen crossings a counter misses, spread evenly over the day: every 1/share-th one."""
    which = np.nonzero(seen)[0]
    which = which[np.argsort(crossings.time[which], kind="stable")]
    rank = np.arange(len(which))
    missed = np.zeros(len(seen), dtype=bool)
    missed[which[np.floor((rank + 1) * share) > np.floor(rank * share)]] = True
    return missed


def _footfall(layout: _Layout, crossings: _Crossings, clock: _Clock) -> tuple[list[Timed], dict[str, int]]:
    """Each counter reports in and out per interval over the whole counting window, quiet intervals included.

    An under-counting counter misses its share of exits; returns the events and how many each missed.
    """
    day = layout.day
    start = (_seconds(day.opening) - 2 * HOUR) // HOUR * HOUR
    end = math.ceil((_seconds(day.closing) + 2 * HOUR) / HOUR) * HOUR
    intervals = int((end - start) // day.tick_seconds)
    interval = ((crossings.time - start) // day.tick_seconds).astype(np.int64)
    events: list[Timed] = []
    undercounted: dict[str, int] = {}
    for counter in layout.mall.people_counters:
        seen = crossings.place == layout.place_index(counter.place)
        if counter.excludes_staff or counter.id in day.staff_excluding_counters:
            seen &= ~crossings.staff
        share = day.faults.undercount.get(counter.id, 0.0)
        if share:
            missed = _missed(crossings, seen & ~crossings.inbound, share)
            undercounted[counter.id] = int(missed.sum())
            seen &= ~missed
        count_in = np.bincount(interval[seen & crossings.inbound], minlength=intervals)
        count_out = np.bincount(interval[seen & ~crossings.inbound], minlength=intervals)
        for index, (n_in, n_out) in enumerate(zip(count_in.tolist(), count_out.tolist(), strict=False)):
            ends = start + (index + 1) * day.tick_seconds
            events.append(
                (
                    ends,
                    counter.id,
                    FootfallTick(
                        counter_id=counter.id,
                        ts=clock(ends),
                        count_in=n_in,
                        count_out=n_out,
                        interval_s=day.tick_seconds,
                        mall_id=layout.mall.id,
                    ),
                )
            )
    return events, undercounted


def epc_of(member_number: int) -> str:
    """A VIP card's 96-bit EPC, derived from the member number so the hub can map it back."""
    return f"{EPC_PREFIX}{member_number:016X}"


def staff_epc_of(staff_number: int) -> str:
    return f"{STAFF_EPC_PREFIX}{staff_number:016X}"


def _reads(
    layout: _Layout,
    reader_id: str,
    which: np.ndarray,
    times: np.ndarray,
    epcs: list[str],
    clock: _Clock,
    rng: np.random.Generator,
) -> list[Timed]:
    """RFID reads at one reader: a random antenna and signal strength for each."""
    antennas = rng.integers(1, layout.day.antennas + 1, len(which))
    rssi = np.clip(np.round(-45 - np.abs(rng.normal(0, 10, len(which)))), -90, -30)
    return [
        (
            when,
            reader_id,
            RfidRead(
                reader_id=reader_id, antenna=antenna, epc=epc, rssi_dbm=strength, ts=clock(when), mall_id=layout.mall.id
            ),
        )
        for when, antenna, strength, epc in zip(times.tolist(), antennas.tolist(), rssi.tolist(), epcs, strict=False)
    ]


def member_id_of(member_number: int) -> str:
    return f"M{member_number:06d}"


def plates_of(member_number: int) -> tuple[str, ...]:
    """The cars a VIP registered on the card (member data ``plates``): none for every third, two for every tenth.

    Green new-energy plates (a letter and five digits after the city letter, eight characters)
    never equal a drawn plate (seven), and one number gives one car, so the hub can map them back.
    """
    if member_number % 3 == 0:
        return ()
    first = f"{PLATE_PROVINCES[0]}AD{member_number:05d}"
    return (first, f"{PLATE_PROVINCES[0]}AF{member_number:05d}") if member_number % 10 == 1 else (first,)


def _rfid(
    layout: _Layout, visitors: _Visitors, crossings: _Crossings, clock: _Clock, rng: np.random.Generator
) -> list[Timed]:
    """Readers see a VIP's tag several times around each pass through the place they watch."""
    events: list[Timed] = []
    vip_pass = ~crossings.staff
    vip_pass[vip_pass] = visitors.vip[crossings.person[vip_pass]]
    for reader in layout.mall.rfid_readers:
        passes = np.nonzero(vip_pass & (crossings.place == layout.place_index(reader.place)))[0]
        reads = 1 + rng.poisson(layout.day.reads_per_pass - 1, len(passes))
        which = np.repeat(passes, reads)
        times = np.round(crossings.time[which] + rng.uniform(-2, 2, len(which)), 3)
        members = visitors.member_number[crossings.person[which]]
        events += _reads(layout, reader.id, which, times, [epc_of(n) for n in members.tolist()], clock, rng)
    return events


def _staff_badges(layout: _Layout, crossings: _Crossings, clock: _Clock, rng: np.random.Generator) -> list[Timed]:
    """Door readers read a staff badge from the moment its wearer crosses the counting line, then a few times more.

    The first read falls in the same counting interval as the crossing, so the hub can deduct it exactly.
    """
    if not layout.day.staff_badges:
        return []
    events: list[Timed] = []
    for reader in layout.mall.rfid_readers:
        passes = np.nonzero(crossings.staff & (crossings.place == layout.place_index(reader.place)))[0]
        reads = 1 + rng.poisson(layout.day.reads_per_pass - 1, len(passes))
        which = np.repeat(passes, reads)
        first = np.repeat(np.cumsum(reads) - reads, reads) == np.arange(len(which))
        after = np.where(first, 0.0, rng.uniform(0, 2, len(which)))
        times = np.floor((crossings.time[which] + after) * 1000) / 1000
        events += _reads(
            layout, reader.id, which, times, [staff_epc_of(n) for n in crossings.person[which].tolist()], clock, rng
        )
    return events


Goods = tuple[str, tuple[str, ...], tuple[Decimal, Decimal]]


def _goods(store: Store) -> tuple[Goods, ...]:
    """What a store sells: the catalogue brands it names, else its category, else everything."""
    names = (store.name, *store.brand_counters)
    for category, brands, prices in CATALOGUE:
        named = tuple(brand for brand in brands if _mentions(names, brand.lower().replace(" ", "")))
        if named:
            return ((category, named, prices),)
    by_category = tuple(goods for goods in CATALOGUE if _mentions(names, goods[0]))
    return by_category or CATALOGUE


def _basket_line(rng: random.Random, goods: tuple[Goods, ...]) -> PosLine:
    """One line: a brand of the store's category at a log-uniform price (cheap items sell more)."""
    category, brands, (low, high) = rng.choice(goods)
    brand = rng.choice(brands)
    price = Decimal(math.exp(rng.uniform(math.log(low), math.log(high)))).quantize(Decimal("0.01"))
    qty = Decimal(1 if rng.random() < 0.8 else 2)
    return PosLine(
        sku=f"{brand[:3].upper()}-{rng.randint(100, 999)}",
        qty=qty,
        unit_price=price,
        amount=price * qty,
        category=category,
        brand=brand,
        supplier=f"{brand} China",
    )


def _purchases(layout: _Layout, visitors: _Visitors, clock: _Clock, rng: np.random.Generator) -> list[Timed]:
    """Each store visit converts with the day's probability; a few conversions are returns of earlier sales."""
    day, mall = layout.day, layout.mall
    store_stop = np.nonzero(visitors.stop_place >= layout.first_store)[0]
    buys = store_stop[rng.random(len(store_stop)) < day.conversion]
    at = visitors.stop_arrival[buys] + rng.uniform(0.5, 1.0, len(buys)) * (
        visitors.stop_departure[buys] - visitors.stop_arrival[buys]
    )
    order = np.argsort(at, kind="stable")
    basket_rng = random.Random(int(rng.integers(2**63)))
    goods = [_goods(store) for store in mall.stores]
    tills: Counter[str] = Counter()
    sales_by_store: defaultdict[str, list[PosTransaction]] = defaultdict(list)
    events: list[Timed] = []
    for number, (stop, when) in enumerate(zip(buys[order].tolist(), np.round(at[order]).tolist(), strict=False), 1):
        store_index = int(visitors.stop_place[stop]) - layout.first_store
        store = mall.stores[store_index].id
        till = f"{store}-T{basket_rng.randint(1, 3)}"
        tills[till] += 1
        common = dict(
            txn_id=f"{mall.id}-{day.day:%Y%m%d}-{number:07d}",
            store_id=store,
            workstation_id=till,
            seq=tills[till],
            ts=clock(when),
            business_day=day.day,
            mall_id=mall.id,
        )
        earlier = sales_by_store[store]
        if earlier and basket_rng.random() < day.return_share:
            original = basket_rng.choice(earlier)
            line = basket_rng.choice(original.lines)
            txn = PosTransaction(
                **common,
                kind="return",
                total=line.amount,
                lines=[line],
                tenders=[Tender(type="refund", amount=line.amount)],
                member_id=original.member_id,
                original_txn_id=original.txn_id,
            )
        else:
            lines = [
                _basket_line(basket_rng, goods[store_index])
                for _ in range(1 + (basket_rng.random() < 0.35) + (basket_rng.random() < 0.1))
            ]
            total = sum((line.amount for line in lines), Decimal(0))
            member = int(visitors.member_number[visitors.stop_visitor[stop]])
            tender = basket_rng.choices(TENDER_TYPES, TENDER_WEIGHTS)[0]
            txn = PosTransaction(
                **common,
                kind="sale",
                total=total,
                lines=lines,
                tenders=[Tender(type=tender, amount=total)],
                member_id=member_id_of(member) if member else None,
            )
            earlier.append(txn)
        events.append((when, till, txn))
    return events


def _plates(count: int, rng: np.random.Generator) -> list[str]:
    """Distinct plates: a province character, a letter and five symbols."""
    space = len(PLATE_LETTERS) * len(PLATE_SYMBOLS) ** 5
    codes = rng.choice(space, size=count, replace=False)
    provinces = rng.choice(len(PLATE_PROVINCES), size=count, p=PLATE_PROVINCE_WEIGHTS)
    plates = []
    for code, province in zip(codes.tolist(), provinces.tolist(), strict=False):
        letter, rest = divmod(code, len(PLATE_SYMBOLS) ** 5)
        symbols = []
        for _ in range(5):
            rest, digit = divmod(rest, len(PLATE_SYMBOLS))
            symbols.append(PLATE_SYMBOLS[digit])
        plates.append(PLATE_PROVINCES[province] + PLATE_LETTERS[letter] + "".join(symbols))
    return plates


def _gates_by_direction(car_park: CarPark) -> tuple[list[str], list[str]]:
    """Gates as configured (``direction``); a car park without entries or exits uses all gates both ways."""
    exits = [gate.id for gate in car_park.gates if gate.direction == "exit"]
    entries = [gate.id for gate in car_park.gates if gate.direction == "entry"]
    every = [gate.id for gate in car_park.gates]
    return entries or every, exits or every


def _parking(
    layout: _Layout, visitors: _Visitors, clock: _Clock, rng: np.random.Generator
) -> tuple[list[Timed], list[dict]]:
    """Each driver parks a few minutes before entering the mall and drives off a few minutes after leaving it.

    A VIP with a car on the card (:func:`plates_of`) comes in it; everyone else in a car of their own.
    """
    car_parks = [park for park in layout.mall.car_parks if park.gates]
    drivers = np.nonzero(visitors.drives)[0] if car_parks else np.empty(0, dtype=np.int64)
    capacity = np.array([park.capacity for park in car_parks], dtype=float)
    park_of = rng.choice(len(car_parks), size=len(drivers), p=capacity / capacity.sum()) if car_parks else drivers
    entered = np.round(visitors.arrival[drivers] - rng.uniform(60, 420, len(drivers)))
    left = np.round(visitors.departure[drivers] + rng.uniform(60, 420, len(drivers)))
    gate_picks = rng.random((len(drivers), 2))
    plates = _plates(len(drivers), rng)
    owners = [
        int(number) if vip and plates_of(int(number)) else 0
        for number, vip in zip(visitors.member_number[drivers].tolist(), visitors.vip[drivers].tolist(), strict=False)
    ]
    plates = [plates_of(owner)[0] if owner else plate for plate, owner in zip(plates, owners, strict=False)]
    events: list[Timed] = []
    stays = []
    for plate, owner, park_index, entry_t, exit_t, (entry_pick, exit_pick) in zip(
        plates, owners, park_of.tolist(), entered.tolist(), left.tolist(), gate_picks.tolist(), strict=False
    ):
        park = car_parks[park_index]
        entries, exits = _gates_by_direction(park)
        entry_gate, exit_gate = entries[int(entry_pick * len(entries))], exits[int(exit_pick * len(exits))]
        for when, gate, direction in ((entry_t, entry_gate, "entry"), (exit_t, exit_gate, "exit")):
            events.append(
                (
                    when,
                    gate,
                    ParkingEvent(
                        gate_id=gate,
                        car_park_id=park.id,
                        plate=plate,
                        direction=direction,
                        ts=clock(when),
                        mall_id=layout.mall.id,
                    ),
                )
            )
        stays.append(
            {
                "plate": plate,
                "car_park": park.id,
                "entry_gate": entry_gate,
                "exit_gate": exit_gate,
                "entry": clock(entry_t).isoformat(),
                "exit": clock(exit_t).isoformat(),
                "member_id": member_id_of(owner) if owner else "",
            }
        )
    stays.sort(key=lambda stay: (stay["entry"], stay["plate"]))
    return events, stays


def _deliver(
    timed: list[Timed], faults: FaultKnobs, clock: _Clock, rng: np.random.Generator
) -> tuple[list[InputEvent], dict]:
    """The events in the order the hub receives them, after the fault knobs had their way.

    Rules: a duplicated RFID read arrives right after its original, marked. A skewed
    device's ``ts`` runs ahead by its skew (flagged as the drivers flag it). An event
    due while its device is down is replayed at the outage's end, or lost without
    backlog. A late event arrives ``lateness_s`` after it was due, ``ts`` unchanged.
    """
    timed = sorted(timed, key=lambda event: event[0])
    size = len(timed)
    duplicated = rng.random(size) < faults.duplicate_read_rate
    late = rng.random(size) < faults.late_event_rate
    outages = defaultdict(list)
    for outage in faults.outages:
        outages[outage.device_id].append(outage)
    arrivals: list[tuple[float, int, InputEvent]] = []
    stats = {
        "duplicate_reads": 0,
        "late_events": 0,
        "backlogged": Counter(),
        "lost": Counter(),
        "clock_skew_s": dict(faults.clock_skew_s),
    }
    for index, (due, device, record) in enumerate(timed):
        received = due
        down = next((o for o in outages.get(device, ()) if _seconds(o.start) < due <= _seconds(o.end)), None)
        if down:
            stats["backlogged" if down.backlog else "lost"][device] += 1
            if not down.backlog:
                continue
            received = _seconds(down.end)
        if late[index]:
            received += faults.lateness_s
            stats["late_events"] += 1
        skew = faults.clock_skew_s.get(device)
        if skew:
            device_ts = clock(due + skew)
            flagged = {"clock_skew_s": clock_skew(device_ts, clock(due))} if hasattr(record, "clock_skew_s") else {}
            record = msgspec.structs.replace(record, ts=device_ts, **flagged)
        arrivals.append((received, 2 * index, record))
        if duplicated[index] and isinstance(record, RfidRead):
            arrivals.append((received, 2 * index + 1, msgspec.structs.replace(record, duplicate=True)))
            stats["duplicate_reads"] += 1
    arrivals.sort(key=lambda arrival: arrival[:2])
    stats["backlogged"], stats["lost"] = dict(stats["backlogged"]), dict(stats["lost"])
    return [record for _, _, record in arrivals], stats


def _vip_visits(layout: _Layout, visitors: _Visitors, clock: _Clock) -> list[dict]:
    place_ids = layout.place_ids
    stops_of: defaultdict[int, list[dict]] = defaultdict(list)
    for stop in np.nonzero(visitors.vip[visitors.stop_visitor])[0].tolist():
        place = int(visitors.stop_place[stop])
        stops_of[int(visitors.stop_visitor[stop])].append(
            {
                "place": place_ids[place],
                "kind": "store" if place >= layout.first_store else "zone",
                "arrived": clock(visitors.stop_arrival[stop]).isoformat(),
                "left": clock(visitors.stop_departure[stop]).isoformat(),
            }
        )
    visits = [
        {
            "member_id": member_id_of(int(visitors.member_number[v])),
            "epc": epc_of(int(visitors.member_number[v])),
            "entrance": place_ids[visitors.entrance[v]],
            "exit": place_ids[visitors.exit_entrance[v]],
            "arrived": clock(visitors.arrival[v]).isoformat(),
            "left": clock(visitors.departure[v]).isoformat(),
            "stops": stops_of[v],
        }
        for v in np.nonzero(visitors.vip)[0].tolist()
    ]
    return sorted(visits, key=lambda visit: (visit["arrived"], visit["member_id"]))


def _transactions(events: list[Timed]) -> dict[str, dict[str, int | str]]:
    totals: defaultdict[str, dict] = defaultdict(
        lambda: {"sales": 0, "sales_total": Decimal(0), "returns": 0, "returns_total": Decimal(0)}
    )
    for _, _, txn in events:
        kind = "sales" if txn.kind == "sale" else "returns"
        totals[txn.store_id][kind] += 1
        totals[txn.store_id][f"{kind}_total"] += txn.total
    return {
        store: {key: str(value) if isinstance(value, Decimal) else value for key, value in figures.items()}
        for store, figures in sorted(totals.items())
    }


def _mean_dwell(layout: _Layout, visitors: _Visitors) -> dict[str, float]:
    """Mean visit length: of the mall (arrival to departure), and of each store and zone (door to door)."""
    places = len(layout.place_ids)
    stay = visitors.stop_departure - visitors.stop_arrival
    total = np.bincount(visitors.stop_place, weights=stay, minlength=places)
    visits = np.bincount(visitors.stop_place, minlength=places)
    dwell = {layout.mall.id: round(float(np.mean(visitors.departure - visitors.arrival)), 3)}
    dwell.update(
        {place: round(float(total[i] / visits[i]), 3) for i, place in enumerate(layout.place_ids) if visits[i]}
    )
    return dwell


def simulate(mall: Mall, day: MallDay) -> SimulatedDay:
    """Draw the day and report it through the mall's devices."""
    if not mall.entrances or not mall.stores:
        raise ValueError(f"mall {mall.id} needs entrances to arrive through and stores to visit")
    if day.vip_share > day.member_share:
        raise ValueError("vip_share cannot exceed member_share: every VIP is a member")
    if day.visitors * day.vip_share > day.vip_pool or day.visitors * day.member_share > day.member_pool:
        raise ValueError("more VIPs or members due than vip_pool or member_pool hold: a member visits once a day")
    if HOUR % day.tick_seconds:
        raise ValueError("tick_seconds must divide an hour, so ticks add up to the hourly truth")
    rngs = {name: np.random.default_rng([day.seed, index]) for index, name in enumerate(STREAMS)}
    layout = _Layout(mall, day)
    clock = _Clock(dt.datetime.combine(day.day, dt.time(0), ZoneInfo(mall.timezone)))
    visitors = _visitors(layout, rngs["visitors"])
    customer_crossings = visitors.crossings()
    crossings = _Crossings.join([customer_crossings, _staff_crossings(layout, rngs["staff"])])
    purchases = _purchases(layout, visitors, clock, rngs["pos"])
    parking, stays = _parking(layout, visitors, clock, rngs["parking"])
    ticks, undercounted = _footfall(layout, crossings, clock)
    timed = (
        ticks
        + _rfid(layout, visitors, crossings, clock, rngs["rfid"])
        + _staff_badges(layout, crossings, clock, rngs["staff_badges"])
        + purchases
        + parking
    )
    events, fault_stats = _deliver(timed, day.faults, clock, rngs["faults"])
    fault_stats["undercounted"] = undercounted
    truth = GroundTruth(
        mall_id=mall.id,
        day=day.day,
        seed=day.seed,
        visitors=_per_hour(customer_crossings, layout.place_ids, clock),
        staff=_per_hour(crossings.only(crossings.staff), layout.place_ids, clock),
        vip_visits=_vip_visits(layout, visitors, clock),
        transactions=_transactions(purchases),
        parking_stays=stays,
        faults=fault_stats,
        mean_dwell_s=_mean_dwell(layout, visitors),
    )
    return SimulatedDay(events, truth)


def record(settings: Settings, mall_id: str, day: MallDay, path: Path, progress: bool = True) -> GroundTruth:
    """Write the day as JSON lines (what ``mallstream replay`` reads) and its truth beside it."""
    mall = next((mall for mall in settings.malls if mall.id == mall_id), None)
    if mall is None:
        raise ValueError(f"no mall {mall_id!r} in the config")
    simulated = simulate(mall, day)
    with (
        path.open("wb") as out,
        tqdm(total=len(simulated.events), unit="ev", desc=f"record {path.name}", disable=not progress) as bar,
    ):
        for start in range(0, len(simulated.events), 10_000):
            chunk = simulated.events[start : start + 10_000]
            out.write(b"".join(encode(event) + b"\n" for event in chunk))
            bar.update(len(chunk))
    simulated.truth.write(truth_path(path))
    return simulated.truth


def _faulty(mall: Mall) -> FaultKnobs:
    """Every kind of fault, on the mall's first devices: a counter and a reader go down, a reader's clock runs fast."""
    counter = mall.people_counters[0].id if mall.people_counters else ""
    reader = mall.rfid_readers[0].id if mall.rfid_readers else ""
    return FaultKnobs(
        duplicate_read_rate=0.05,
        clock_skew_s={reader: 90.0},
        late_event_rate=0.01,
        lateness_s=300.0,
        outages=(
            Outage(counter, dt.time(14), dt.time(15), backlog=True),
            Outage(reader, dt.time(16), dt.time(16, 30), backlog=False),
        ),
    )


#: Named days for ``mallstream simulate --scenario``; device-specific faults need the mall.
SCENARIOS: dict[str, Callable[[Mall], MallDay]] = {
    "weekday": lambda mall: MallDay(
        visitors=60_000,
        day=dt.date(2026, 11, 23),
        entrance_curves={e.id: METRO_CURVE for e in mall.entrances if _mentions((e.id, e.name), "metro")},
    ),
    "weekend": lambda mall: MallDay(
        visitors=100_000,
        day=dt.date(2026, 11, 21),
        arrival_curve=WEEKEND_CURVE,
        vip_share=0.008,
        conversion=0.22,
        parking_share=0.3,
        staff=300,
    ),
    "outage": lambda mall: replace(SCENARIOS["weekday"](mall), faults=_faulty(mall)),
}


def scenario(name: str, mall: Mall, seed: int = 7, duration: dt.timedelta | None = None) -> MallDay:
    """A named day for this mall; ``duration`` keeps only its first hours, and the visitors due in them."""
    day = replace(SCENARIOS[name](mall), seed=seed)
    if duration is None:
        return day
    opening = _seconds(day.opening)
    until = min(_seconds(day.closing), opening + duration.total_seconds())
    minute_starts, share = _arrival_density(day.arrival_curve, opening, _seconds(day.closing) - MINUTE)
    closing = dt.time(int(until // HOUR), int(until % HOUR // MINUTE))
    return replace(day, closing=closing, visitors=round(day.visitors * share[minute_starts < until].sum()))
