"""Version 13: parking occupancy by hour, kept after the gate events' rows are gone."""

from __future__ import annotations

from .base import DEDUP, Migration

#: Parking occupancy by hour, from two sources: each gate event the parking agent counted is a row of
#: parking_occupancy, and each exit among them is also a stay, so entries are the rows less the stays.
#: The occupancy at the hour's end is the last row's by time, then id: rows may come in any order and batches.
_PARKING_HOURLY: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "parking_occupancy": (
        "ts",
        (
            ("capacity", "max(capacity)"),
            ("occupancy_end", "argMaxState(occupancy, (ts, event_id))"),
            ("occupancy_peak", "max(occupancy)"),
            ("entries", "toInt64(count())"),
        ),
    ),
    "parking_stays": ("exit", (("entries", "-toInt64(count())"), ("exits", "toInt64(count())"))),
}
#: Back-filled hours start after the first hour the TTL may have begun deleting, so each hour is whole.
_WHOLE_HOURS_KEPT = "toStartOfHour(now() - INTERVAL 90 DAY) + INTERVAL 1 HOUR"


def _parking_hourly_select(source: str, where: str = "") -> str:
    moment, figures = _PARKING_HOURLY[source]
    columns = ", ".join(f"{expression} AS {column}" for column, expression in figures)
    return f"""SELECT mall_id, car_park_id, toStartOfHour({moment}) AS hour, {columns}
               FROM {{db}}.{source} {where} GROUP BY mall_id, car_park_id, hour"""


def _parking_hourly_backfill(source: str) -> str:
    """Fills parking_hourly from the source's rows a TTL has left whole; the views take it from there."""
    moment, figures = _PARKING_HOURLY[source]
    columns = ", ".join(column for column, _ in figures)
    return f"INSERT INTO {{db}}.parking_hourly (mall_id, car_park_id, hour, {columns}) " + _parking_hourly_select(
        source, f"WHERE {moment} >= {_WHOLE_HOURS_KEPT}"
    )


MIGRATION = Migration(
    13,
    "parking occupancy per car park by hour (at its end, peak, entries, exits), kept when gate-event rows go",
    [
        # 30 car parks make 263,000 rows a year: kept for ever, like footfall_hourly. No day table: a day is
        # the mall's local one, which the rows do not know; reports sum hours into local days.
        f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_hourly (
            mall_id LowCardinality(String),
            car_park_id LowCardinality(String),
            hour DateTime('UTC'),
            capacity SimpleAggregateFunction(max, UInt32),
            occupancy_end AggregateFunction(argMax, UInt32, Tuple(DateTime64(3, 'UTC'), String)),
            occupancy_peak SimpleAggregateFunction(max, UInt32),
            entries SimpleAggregateFunction(sum, Int64),
            exits SimpleAggregateFunction(sum, Int64)
        ) ENGINE = AggregatingMergeTree ORDER BY (mall_id, car_park_id, hour) {DEDUP}""",
        *(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.parking_hourly_from_{source.removeprefix('parking_')}_mv "
            f"TO {{db}}.parking_hourly AS {_parking_hourly_select(source)}"
            for source in _PARKING_HOURLY
        ),
        # a migration cut short runs again from its start: the back-fill must not count twice
        "TRUNCATE TABLE {db}.parking_hourly",
        *(_parking_hourly_backfill(source) for source in _PARKING_HOURLY),
    ],
)
