"""The config's devices and the places they watch, as rows of the ``places`` table.

Written at every worker start, so the boards can name a device's place, floor and area as the config has them now.
"""

from __future__ import annotations

from typing import Any

from mallstream.settings import Place, Settings, Store

from .rows import in_column_order

PLACES_COLUMNS = (
    "mall_id",
    "device_id",
    "device_kind",
    "place_id",
    "place_kind",
    "floor",
    "area_m2",
    "excludes_staff",
    "version",
)


def place_rows(settings: Settings, version: int) -> list[tuple[Any, ...]]:
    """Every device of the config with the place it watches, for the ``places`` table."""
    rows = []
    for mall in settings.malls:
        places: dict[str, tuple[str, Place | Store | None]] = {
            place.id: ("entrance", place) for place in mall.entrances
        }
        places |= {place.id: ("zone", place) for place in mall.zones}
        places |= {place.id: ("floor", place) for place in mall.floors}
        places |= {store.id: ("store", store) for store in mall.stores}
        places |= {park.id: ("car_park", None) for park in mall.car_parks}
        devices = [("rfid_reader", reader) for reader in mall.rfid_readers]
        devices += [("people_counter", counter) for counter in mall.people_counters]
        devices += [("parking_gate", gate) for park in mall.car_parks for gate in park.gates]
        for kind, device in devices:
            place_kind, place = places.get(device.place, ("unknown", None))
            area = getattr(place, "area_m2", None)
            row = {
                "mall_id": mall.id,
                "device_id": device.id,
                "device_kind": kind,
                "place_id": device.place,
                "place_kind": place_kind,
                "floor": device.place if place_kind == "floor" else getattr(place, "floor", ""),
                "area_m2": None if area is None else float(area),
                "excludes_staff": device.excludes_staff,
                "version": version,
            }
            rows.append(in_column_order(row, PLACES_COLUMNS))
    return rows
