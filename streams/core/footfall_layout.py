"""Where each people counter and badge reader stands, compiled once from the mall config for the footfall core.

A counter's counts add to the rows of everything it watches: its own row, its place
(entrance, zone, store, or floor for an escalator, lift or stair counter), the floor
an entrance opens onto, and the mall for entrances. Areas with an occupancy are the
mall (its entrances), each counted store and zone, and floors that have counters at
their transitions (without them, people changing floor would go unseen).
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ...settings import FootfallConfig, Mall, Place, Store

#: A roll-up row's identity: (level, key), e.g. ("store", "S201") or ("mall", "sh-xujiahui").
RowKey = tuple[str, str]
LEVELS = ("counter", "entrance", "floor", "zone", "store", "mall")


@dataclass(frozen=True)
class FootfallLayout:
    """The mall's counters and readers as lookup tables, so a tick costs a few dict reads."""

    mall_id: str
    timezone: ZoneInfo
    config: FootfallConfig
    #: counter -> rows its counts add to.
    targets: dict[str, tuple[RowKey, ...]]
    #: counters whose every count is a member of staff.
    staff_only: frozenset[str]
    #: badge reader -> the counter its staff passes come off (the first one at its place that counts staff).
    deducts_at: dict[str, str]
    #: badge reader -> the area a pass there takes its wearer in or out of.
    badge_area: dict[str, str]
    #: aisle counter -> the store row it counts passers-by for.
    aisle_of: dict[str, RowKey]
    #: rows that are also areas with an occupancy, and their floor area in m² where known.
    areas: tuple[RowKey, ...]
    area_m2: dict[RowKey, float]

    @classmethod
    def of(cls, mall: Mall, config: FootfallConfig | None = None) -> FootfallLayout:
        """The mall's layout under ``config``, by default the mall's own ``footfall:`` section."""
        config = config or mall.footfall
        level_of = {f.id: ("floor", f.id) for f in mall.floors}
        level_of |= {e.id: ("entrance", e.floor) for e in mall.entrances}
        level_of |= {z.id: ("zone", z.floor) for z in mall.zones}
        level_of |= {s.id: ("store", s.floor) for s in mall.stores}
        mall_key: RowKey = ("mall", mall.id)
        targets: dict[str, tuple[RowKey, ...]] = {}
        for counter in mall.people_counters:
            level, floor = level_of.get(counter.place, ("", ""))
            keys: list[RowKey] = [("counter", counter.id)]
            if level:
                keys.append((level, counter.place))
            if level == "entrance" and floor:
                keys.append(("floor", floor))
            if level == "entrance":
                keys.append(mall_key)
            targets[counter.id] = tuple(keys)

        counts_staff = [c for c in mall.people_counters if not c.excludes_staff and c.id not in config.staff_passages]
        deducts_at: dict[str, str] = {}
        for reader in mall.rfid_readers:
            counter_id = next((c.id for c in counts_staff if c.place == reader.place), None)
            if counter_id:
                deducts_at[reader.id] = counter_id
        badge_area = {
            reader.id: mall.id if level_of.get(reader.place, ("",))[0] == "entrance" else reader.place
            for reader in mall.rfid_readers
        }

        counted = {c.place for c in mall.people_counters}
        areas = [mall_key] + [
            (level_of[place][0], place)
            for place in sorted(counted)
            if level_of.get(place, ("",))[0] in ("zone", "store", "floor")
        ]
        sized: list[Place | Store] = [*mall.floors, *mall.zones, *mall.stores]
        area_m2 = {(level_of[p.id][0], p.id): float(p.area_m2) for p in sized if p.area_m2}
        return cls(
            mall_id=mall.id,
            timezone=ZoneInfo(mall.timezone),
            config=config,
            targets=targets,
            staff_only=frozenset(config.staff_passages),
            deducts_at=deducts_at,
            badge_area=badge_area,
            aisle_of={counter: ("store", store) for store, counter in config.aisle_counters.items()},
            areas=tuple(areas),
            area_m2=area_m2,
        )

    def targets_of(self, counter_id: str) -> tuple[RowKey, ...]:
        """A counter missing from the config still gets its own row, so nothing it counts is lost."""
        return self.targets.get(counter_id) or (("counter", counter_id),)
