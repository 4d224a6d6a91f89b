"""Which mall an input event belongs to when it does not say.

Devices and tills often know only themselves: a counter its id, a till its store. The
config places every device and store in one mall, and a hub of a single mall needs no
placing at all. Every raw row, roll-up and routed event is stamped from here, so no row
is ever stored without its mall (a report filters by mall).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import msgspec

from mallstream.settings import Mall

from ..records import FootfallTick, InvalidEvent, ParkingEvent, PosTransaction, RfidRead

Event = TypeVar("Event", PosTransaction, RfidRead, FootfallTick, ParkingEvent)


def _source(event: PosTransaction | RfidRead | FootfallTick | ParkingEvent) -> tuple[str, str]:
    """(what kind of source, its id): what the config places in a mall."""
    if isinstance(event, FootfallTick):
        return "counter", event.counter_id
    if isinstance(event, RfidRead):
        return "reader", event.reader_id
    if isinstance(event, ParkingEvent):
        return "car park", event.car_park_id
    return "store", event.store_id


class MallDirectory:
    """Device, car park and store ids to their mall; with one mall configured, everything is in it."""

    def __init__(self, malls: Sequence[Mall]) -> None:
        self.only = malls[0].id if len(malls) == 1 else None
        self.places = {
            **{("counter", device.id): mall.id for mall in malls for device in mall.people_counters},
            **{("reader", device.id): mall.id for mall in malls for device in mall.rfid_readers},
            **{("car park", park.id): mall.id for mall in malls for park in mall.car_parks},
            **{("store", store.id): mall.id for mall in malls for store in mall.stores},
        }

    def mall_of(self, event: PosTransaction | RfidRead | FootfallTick | ParkingEvent) -> str | None:
        """The event's own mall_id, else its source's mall, else the only mall; None if none applies."""
        return event.mall_id or self.places.get(_source(event), self.only)

    def stamped(self, event: Event) -> Event:
        """The event with its mall_id filled in; InvalidEvent (a dead letter) when the config cannot place it."""
        if event.mall_id:
            return event
        mall_id = self.mall_of(event)
        if mall_id is None:
            kind, source = _source(event)
            raise InvalidEvent(f"{kind} {source!r} is not in the config and the event names no mall_id")
        return msgspec.structs.replace(event, mall_id=mall_id)
