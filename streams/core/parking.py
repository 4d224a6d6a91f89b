"""Car parks from gate plate reads: occupancy, stays matched entry to exit, and a full-park alert.

``apply_parking_event(state, event, now, layout)`` returns the state (updated in place)
and what to emit: the park's occupancy after the event, a finished stay on exit, an
alert when the park fills. What the driver pays is not decided here: see
:func:`~.parking_fees.at_exit` (a member's car is settled on the card, anyone else pays
the fee table).

* A plate is matched from its entry to its next exit at the same car park.
* A camera reading one car twice (same plate, same direction, within
  ``repeat_read_s``) is one pass.
* An exit without an entry (the entry read was missed, or happened before the
  stream started) still ends a stay, with ``entry`` unknown, and leaves occupancy as
  it is; an entry of a plate already inside replaces its entry time (its exit was
  missed) and leaves occupancy as it is.
* The alert fires once when occupancy rises above ``alert_share`` of capacity and
  re-arms when it falls below ``clear_share``, so a park hovering at the line does
  not alert on every car.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from decimal import Decimal

import msgspec

from ...settings import Mall, ParkingConfig
from ..records import Alert, ParkingEvent, Record

#: What a plate is compared by: no spaces, dashes or dots (``沪A·12345``, ``沪A 12345``, ``沪A-12345``).
_PLATE_NOISE = re.compile(r"[\s\-.·•_]+")


def normalise_plate(plate: str) -> str:
    """A plate as member data and gate cameras are matched on: upper case, without separators."""
    return _PLATE_NOISE.sub("", plate).upper()


# frozen=True restates what Record passes down (msgspec inherits it), for type checkers, which do not see that
class ParkingStay(Record, tag="parking_stay", frozen=True):
    """A car that left: when it came and went, for how long, and what the exit gate made of it.

    ``fee`` (currency units) is the fee table's price for a car that is not a member's; a
    member's car (``member_id``) is settled on the card, and the ledger says what it cost.
    """

    mall_id: str
    car_park_id: str
    plate: str
    entry: dt.datetime | None
    exit: dt.datetime
    exit_gate: str
    duration_s: float | None
    fee: Decimal | None = None
    member_id: str = ""

    @property
    def stay_id(self) -> str:
        """Car park, plate and exit time (ms): the same stay always has the same id, at most 100 characters."""
        full = f"{self.car_park_id}:{self.plate}:{int(self.exit.timestamp() * 1000)}"
        if len(full) <= 100:
            return full
        return f"{self.car_park_id[:32]}:{hashlib.blake2b(full.encode(), digest_size=16).hexdigest()}"


class ParkingOccupancy(Record, tag="parking_occupancy", frozen=True):
    """Cars in one car park right after a gate event."""

    mall_id: str
    car_park_id: str
    ts: dt.datetime
    occupancy: int
    capacity: int
    #: the gate event it follows (set by the agent), so a redelivery of that event is stored once.
    cause: str = ""


class OccupancyBatch(Record, tag="parking_occupancies", frozen=True):
    """The occupancy rows of one batch of gate events, as one message (a row per gate event)."""

    rows: list[ParkingOccupancy]


ParkingOutput = ParkingOccupancy | ParkingStay | Alert


class CarParkState:
    """Who is parked in one car park, since when, and whether its full alert is raised."""

    __slots__ = ("alerting", "last_exit", "parked")

    def __init__(self) -> None:
        self.parked: dict[str, dt.datetime] = {}
        self.last_exit: dict[str, dt.datetime] = {}
        self.alerting = False


class ParkingState:
    """Every car park of one mall."""

    __slots__ = ("car_parks",)

    def __init__(self) -> None:
        self.car_parks: dict[str, CarParkState] = {}


class ParkingLayout(msgspec.Struct, frozen=True):
    """A mall's car parks and their capacities, with the thresholds."""

    mall_id: str
    capacity: dict[str, int]
    config: ParkingConfig

    @classmethod
    def of(cls, mall: Mall, config: ParkingConfig | None = None) -> ParkingLayout:
        """The mall's car parks under ``config``, by default the mall's own ``parking:`` section."""
        return cls(mall.id, {park.id: park.capacity for park in mall.car_parks}, config or mall.parking)


def apply_parking_event(
    state: ParkingState, event: ParkingEvent, now: dt.datetime, layout: ParkingLayout
) -> tuple[ParkingState, list[ParkingOutput]]:
    """Apply one gate read; ``now`` stamps an alert."""
    park = state.car_parks.get(event.car_park_id)
    if park is None:
        park = state.car_parks[event.car_park_id] = CarParkState()
    repeat = layout.config.repeat_read_s
    outputs: list[ParkingOutput] = []
    if event.direction == "entry":
        entered = park.parked.get(event.plate)
        if entered is not None and (event.ts - entered).total_seconds() <= repeat:
            return state, []
        park.parked[event.plate] = event.ts
    else:
        # exits older than the repeat window tell nothing more; forgotten by this car park's own clock, since
        # in a backlog another car park's reads may be months ahead of this one's
        cutoff = event.ts - dt.timedelta(seconds=repeat)
        park.last_exit = {plate: ts for plate, ts in park.last_exit.items() if ts >= cutoff}
        left = park.last_exit.get(event.plate)
        if left is not None and (event.ts - left).total_seconds() <= repeat:
            return state, []
        park.last_exit[event.plate] = event.ts
        entered = park.parked.pop(event.plate, None)
        outputs.append(
            ParkingStay(
                mall_id=layout.mall_id,
                car_park_id=event.car_park_id,
                plate=event.plate,
                entry=entered,
                exit=event.ts,
                exit_gate=event.gate_id,
                duration_s=(event.ts - entered).total_seconds() if entered else None,
            )
        )
    capacity = layout.capacity.get(event.car_park_id, 0)
    occupancy = len(park.parked)
    outputs.insert(
        0,
        ParkingOccupancy(
            mall_id=layout.mall_id, car_park_id=event.car_park_id, ts=event.ts, occupancy=occupancy, capacity=capacity
        ),
    )
    alert = _full_alert(park, occupancy, capacity, now, event, layout)
    return state, outputs + ([alert] if alert else [])


def _full_alert(
    park: CarParkState, occupancy: int, capacity: int, now: dt.datetime, event: ParkingEvent, layout: ParkingLayout
) -> Alert | None:
    if not capacity:
        return None
    share = occupancy / capacity
    if park.alerting:
        park.alerting = share >= layout.config.clear_share
        return None
    if share <= layout.config.alert_share:
        return None
    park.alerting = True
    return Alert(
        alert_id=f"car_park_full:{event.car_park_id}:{now.isoformat()}",
        mall_id=layout.mall_id,
        kind="car_park_full",
        ts=now,
        severity="warning",
        message=f"car park {event.car_park_id} holds {occupancy} of {capacity} cars ({share:.0%})",
    )
