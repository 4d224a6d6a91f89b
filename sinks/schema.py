"""ClickHouse tables and materialized views, as ordered migrations.

Each sunk table carries where its rows came from (``_topic``, ``_partition``,
``_offset``) and the insert batch that wrote them (``_batch``), which is also the
insert-deduplication token: re-running a batch after a crash mid-insert fills in
a view that missed it, and changes nothing that already has it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mallstream.settings import Settings
from mallstream.streams.core.footfall import RollupRow
from mallstream.streams.core.occupancy import AreaDay, AreaRow
from mallstream.streams.core.parking import ParkingOccupancy, ParkingStay
from mallstream.streams.records import Alert, DeadLetter, DeviceHealth, FootfallTick, LedgerEntry, ParkingEvent, RfidRead, VipVisit, identity


@dataclass(frozen=True)
class SinkTable:
    """A table fed by a sink: its name, its columns (the first is the row's key), and the record mapping."""

    name: str
    columns: Sequence[str]
    row: Callable[[Any], tuple]


def _ledger_row(entry: LedgerEntry) -> tuple:
    return (
        entry.entry_id, entry.mall_id, entry.member_id, entry.account, entry.delta, entry.balance_after,
        entry.cause, entry.txn_id, entry.store_id, entry.ts, entry.business_day,
    )


def _dead_letter_row(letter: DeadLetter) -> tuple:
    return (letter.dead_letter_id, letter.source, letter.reason, letter.payload, letter.ts)


def _rfid_row(read: RfidRead) -> tuple:
    return (identity(read), read.mall_id or "", read.reader_id, read.antenna, read.epc, read.rssi_dbm, read.ts,
            read.clock_skew_s, read.duplicate)


def _footfall_row(tick: FootfallTick) -> tuple:
    return (identity(tick), tick.mall_id or "", tick.counter_id, tick.ts, tick.interval_s, tick.count_in,
            tick.count_out, tick.clock_skew_s)


def _parking_row(event: ParkingEvent) -> tuple:
    return (identity(event), event.mall_id or "", event.car_park_id, event.gate_id, event.plate, event.direction,
            event.ts, event.clock_skew_s)


def _visit_row(visit: VipVisit) -> tuple:
    # an amended visit (late spend) is a new row of the same visit, with one more receipt
    return (f"{visit.visit_id}:{len(visit.txn_ids)}:{visit.spend_cents}", visit.visit_id, visit.mall_id,
            visit.member_id, visit.tier, visit.visit_number, visit.arrived, visit.left,
            [stop.place for stop in visit.path], [stop.arrived for stop in visit.path],
            [stop.dwell_s for stop in visit.path], visit.zone_dwell_s, visit.reads, visit.spend_cents,
            visit.txn_ids, len(visit.txn_ids))


def _alert_row(alert: Alert) -> tuple:
    return (alert.alert_id, alert.mall_id, alert.kind, alert.severity, alert.ts, alert.decided_at,
            alert.published_at, alert.member_id, alert.tier, alert.zone_id, alert.visit_id, alert.message)


def _health_row(health: DeviceHealth) -> tuple:
    return (f"{health.device_id}@{health.ts.isoformat()}", health.device_id, health.ts, health.last_seen,
            health.frames, health.events, health.rejects, health.duplicates, health.errors, health.refused,
            health.last_error)


LEDGER_TABLE = SinkTable(
    "ledger_entries",
    ("entry_id", "mall_id", "member_id", "account", "delta", "balance_after",
     "cause", "txn_id", "store_id", "ts", "business_day"),
    _ledger_row,
)
DEAD_LETTERS_TABLE = SinkTable(
    "dead_letters", ("dead_letter_id", "source", "reason", "payload", "ts"), _dead_letter_row
)

RFID_READS_TABLE = SinkTable(
    "rfid_reads",
    ("event_id", "mall_id", "reader_id", "antenna", "epc", "rssi_dbm", "ts", "clock_skew_s", "duplicate"),
    _rfid_row,
)
FOOTFALL_TICKS_TABLE = SinkTable(
    "footfall_ticks",
    ("event_id", "mall_id", "counter_id", "ts", "interval_s", "count_in", "count_out", "clock_skew_s"),
    _footfall_row,
)
PARKING_EVENTS_TABLE = SinkTable(
    "parking_events",
    ("event_id", "mall_id", "car_park_id", "gate_id", "plate", "direction", "ts", "clock_skew_s"),
    _parking_row,
)
DEVICE_HEALTH_TABLE = SinkTable(
    "device_health",
    ("report_id", "device_id", "ts", "last_seen", "frames", "events", "rejects", "duplicates", "errors", "refused",
     "last_error"),
    _health_row,
)

def place_rows(settings: Settings, version: int) -> list[tuple]:
    """Every device of the config with the place it watches, for the ``places`` table."""
    rows = []
    for mall in settings.malls:
        places = {place.id: ("entrance", place) for place in mall.entrances}
        places |= {place.id: ("zone", place) for place in mall.zones}
        places |= {place.id: ("floor", place) for place in mall.floors}
        places |= {store.id: ("store", store) for store in mall.stores}
        places |= {park.id: ("car_park", None) for park in mall.car_parks}
        devices = [("rfid_reader", d) for d in mall.rfid_readers] + [("people_counter", d) for d in mall.people_counters]
        devices += [("parking_gate", gate) for park in mall.car_parks for gate in park.gates]
        for kind, device in devices:
            place_kind, place = places.get(device.place, ("unknown", None))
            floor = device.place if place_kind == "floor" else getattr(place, "floor", "")
            area = getattr(place, "area_m2", None)
            rows.append((mall.id, device.id, kind, device.place, place_kind, floor,
                         None if area is None else float(area), device.excludes_staff, version))
    return rows


PLACES_COLUMNS = ("mall_id", "device_id", "device_kind", "place_id", "place_kind", "floor", "area_m2",
                  "excludes_staff", "version")

VIP_VISITS_TABLE = SinkTable(
    "vip_visits",
    ("row_id", "visit_id", "mall_id", "member_id", "tier", "visit_number", "arrived", "left", "path_places",
     "path_arrived", "path_dwell_s", "zone_dwell_s", "reads", "spend_cents", "txn_ids", "version"),
    _visit_row,
)
ALERTS_TABLE = SinkTable(
    "alerts",
    ("alert_id", "mall_id", "kind", "severity", "ts", "decided_at", "published_at", "member_id", "tier", "zone_id",
     "visit_id", "message"),
    _alert_row,
)

def _area_id(mall_id: str, level: str, key: str, moment: dt.datetime) -> str:
    """Rows of one area and moment have one id however often they are emitted (a redelivery, a restart)."""
    return f"{mall_id}:{level}:{key}:{int(moment.timestamp())}"


def _rollup_row(row: RollupRow) -> tuple:
    # a late row is one event's addition to its interval: that event names it
    row_id = _area_id(row.mall_id, row.level, row.key, row.start) + (f":late:{row.cause}" if row.late else "")
    return (row_id, row.mall_id, row.level, row.key, row.start, row.start.date(), row.interval_s, row.visitors_in,
            row.visitors_out, row.staff_in, row.staff_out, row.transactions, row.passers_by, row.late)


def _area_row(row: AreaRow) -> tuple:
    return (_area_id(row.mall_id, row.level, row.key, row.start), row.mall_id, row.level, row.key, row.start,
            row.interval_s, row.occupancy, row.occupancy_uncorrected, row.density, row.departures, row.dwell_s)


def _area_day_row(day: AreaDay) -> tuple:
    # the business day it closes: a mall emptying at 01:00 closes the day before
    return (_area_id(day.mall_id, day.level, day.key, day.closed_at), day.mall_id, day.level, day.key,
            day.closed_at, (day.closed_at - dt.timedelta(hours=12)).date(), day.visitors_in,
            day.visitors_out_counted, day.residual, day.exit_scale_used, day.exit_scale_next, day.dwell_littles_s,
            day.dwell_matched_s)


def _stay_row(stay: ParkingStay) -> tuple:
    return (f"{stay.car_park_id}:{stay.plate}:{int(stay.exit.timestamp() * 1000)}", stay.mall_id, stay.car_park_id,
            stay.plate, stay.entry, stay.exit, stay.exit_gate, stay.duration_s, stay.fee)


def _parking_occupancy_row(row: ParkingOccupancy) -> tuple:
    return (row.cause, row.mall_id, row.car_park_id, row.ts, row.occupancy, row.capacity)


FOOTFALL_ROLLUPS_TABLE = SinkTable(
    "footfall_rollups",
    ("row_id", "mall_id", "level", "key", "start", "local_day", "interval_s", "visitors_in", "visitors_out",
     "staff_in", "staff_out", "transactions", "passers_by", "late"),
    _rollup_row,
)
AREA_OCCUPANCY_TABLE = SinkTable(
    "area_occupancy",
    ("row_id", "mall_id", "level", "key", "start", "interval_s", "occupancy", "occupancy_uncorrected", "density",
     "departures", "dwell_s"),
    _area_row,
)
AREA_DAYS_TABLE = SinkTable(
    "area_days",
    ("row_id", "mall_id", "level", "key", "closed_at", "local_day", "visitors_in", "visitors_out_counted",
     "residual", "exit_scale_used", "exit_scale_next", "dwell_littles_s", "dwell_matched_s"),
    _area_day_row,
)
PARKING_STAYS_TABLE = SinkTable(
    "parking_stays",
    ("row_id", "mall_id", "car_park_id", "plate", "entry", "exit", "exit_gate", "duration_s", "fee"),
    _stay_row,
)
PARKING_OCCUPANCY_TABLE = SinkTable(
    "parking_occupancy", ("event_id", "mall_id", "car_park_id", "ts", "occupancy", "capacity"),
    _parking_occupancy_row,
)

#: Kept on every table that takes sink inserts or view inserts, so a repeated
#: batch token is recognised (ClickHouse keeps that many recent block hashes).
DEDUP = "SETTINGS non_replicated_deduplication_window = 1000"

SINK_COLUMNS = """
    _topic LowCardinality(String),
    _partition UInt32,
    _offset UInt64,
    _batch String,
    _sunk_at DateTime64(3, 'UTC')"""

#: Visitor roll-ups: (grain, time column, its type, retention). Minute rows go after 90 days; hours and days stay.
_VISITOR_GRAINS = (
    ("minute", "minute", "DateTime('UTC')", "TTL minute + INTERVAL 90 DAY"),
    ("hourly", "hour", "DateTime('UTC')", ""),
    ("daily", "day", "Date", ""),
)

#: (version, description, statements). ``{db}`` is the configured database. Append only.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "member ledger, daily points roll-up, dead letters",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.ledger_entries (
                entry_id String,
                mall_id LowCardinality(String),
                member_id String,
                account LowCardinality(String),
                delta Int64,
                balance_after Int64,
                cause LowCardinality(String),
                txn_id String,
                store_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                business_day Date,{SINK_COLUMNS}
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(business_day) ORDER BY entry_id {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.points_daily (
                mall_id LowCardinality(String),
                business_day Date,
                store_id LowCardinality(String),
                account LowCardinality(String),
                earned Int64,
                reversed Int64,
                entries UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, business_day, store_id, account) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.points_daily_mv TO {db}.points_daily AS
               SELECT mall_id, business_day, store_id, account,
                      sumIf(delta, delta > 0) AS earned, sumIf(-delta, delta < 0) AS reversed, count() AS entries
               FROM {db}.ledger_entries GROUP BY mall_id, business_day, store_id, account""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.dead_letters (
                dead_letter_id String,
                source String,
                reason String,
                payload String,
                ts DateTime64(3, 'UTC'),{SINK_COLUMNS}
            ) ENGINE = MergeTree ORDER BY dead_letter_id {DEDUP}""",
        ],
    ),
    (
        2,
        "raw device events (RFID reads, footfall ticks, parking gate events) and device health",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.rfid_reads (
                event_id String,
                mall_id LowCardinality(String),
                reader_id LowCardinality(String),
                antenna UInt8,
                epc String,
                rssi_dbm Float32,
                ts DateTime64(3, 'UTC'),
                clock_skew_s Nullable(Float32),
                duplicate Bool,{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, reader_id, ts) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_ticks (
                event_id String,
                mall_id LowCardinality(String),
                counter_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                interval_s UInt32,
                count_in UInt32,
                count_out UInt32,
                clock_skew_s Nullable(Float32),{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, counter_id, ts) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_events (
                event_id String,
                mall_id LowCardinality(String),
                car_park_id LowCardinality(String),
                gate_id LowCardinality(String),
                plate String,
                direction Enum8('entry' = 1, 'exit' = 2),
                ts DateTime64(3, 'UTC'),
                clock_skew_s Nullable(Float32),{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, car_park_id, ts) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.device_health (
                report_id String,
                device_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                last_seen Nullable(String),
                frames UInt64,
                events UInt64,
                rejects UInt64,
                duplicates UInt64,
                errors UInt64,
                refused UInt64,
                last_error Nullable(String),{SINK_COLUMNS}
            ) ENGINE = MergeTree ORDER BY (device_id, ts) TTL toDateTime(ts) + INTERVAL 90 DAY {DEDUP}""",
        ],
    ),
    (
        3,
        "places of the devices; footfall per counter by minute (kept 90 days) and by hour (kept)",
        [
            # Written from the config at every worker start; the latest version of a device wins.
            """CREATE TABLE IF NOT EXISTS {db}.places (
                mall_id LowCardinality(String),
                device_id String,
                device_kind LowCardinality(String),
                place_id String,
                place_kind LowCardinality(String),
                floor LowCardinality(String),
                area_m2 Nullable(Float64),
                excludes_staff Bool,
                version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (mall_id, device_id)""",
            # A tick counts the interval that ends at ts: it is filed under the minute that interval starts.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_minute (
                mall_id LowCardinality(String),
                counter_id LowCardinality(String),
                minute DateTime('UTC'),
                count_in UInt64,
                count_out UInt64,
                ticks UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, counter_id, minute)
              TTL minute + INTERVAL 90 DAY {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.footfall_minute_mv TO {db}.footfall_minute AS
               SELECT mall_id, counter_id, toStartOfMinute(ts - toIntervalSecond(interval_s)) AS minute,
                      sum(count_in) AS count_in, sum(count_out) AS count_out, count() AS ticks
               FROM {db}.footfall_ticks GROUP BY mall_id, counter_id, minute""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_hourly (
                mall_id LowCardinality(String),
                counter_id LowCardinality(String),
                hour DateTime('UTC'),
                count_in UInt64,
                count_out UInt64,
                ticks UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, counter_id, hour) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.footfall_hourly_mv TO {db}.footfall_hourly AS
               SELECT mall_id, counter_id, toStartOfHour(ts - toIntervalSecond(interval_s)) AS hour,
                      sum(count_in) AS count_in, sum(count_out) AS count_out, count() AS ticks
               FROM {db}.footfall_ticks GROUP BY mall_id, counter_id, hour""",
        ],
    ),
    (
        4,
        "VIP visits (latest amendment wins) and delivered alerts with their latency",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.vip_visits (
                row_id String,
                visit_id String,
                mall_id LowCardinality(String),
                member_id String,
                tier LowCardinality(String),
                visit_number UInt32,
                arrived DateTime64(3, 'UTC'),
                left DateTime64(3, 'UTC'),
                path_places Array(String),
                path_arrived Array(DateTime64(3, 'UTC')),
                path_dwell_s Array(Float64),
                zone_dwell_s Map(String, Float64),
                reads UInt32,
                spend_cents Int64,
                txn_ids Array(String),
                version UInt32,{SINK_COLUMNS}
            ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(arrived) ORDER BY (mall_id, visit_id)
              {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.alerts (
                alert_id String,
                mall_id LowCardinality(String),
                kind LowCardinality(String),
                severity LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                decided_at Nullable(DateTime64(3, 'UTC')),
                published_at Nullable(DateTime64(3, 'UTC')),
                member_id Nullable(String),
                tier LowCardinality(Nullable(String)),
                zone_id Nullable(String),
                visit_id Nullable(String),
                message String,{SINK_COLUMNS}
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, ts, alert_id) {DEDUP}""",
        ],
    ),
    (
        5,
        "visitors (staff deducted) per level by minute (kept 90 days), hour and day; occupancy, dwell and "
        "drift per area; parking stays and occupancy",
        [
            # Rows of the footfall agent; a late row adds to its interval, so everything downstream sums.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.footfall_rollups (
                row_id String,
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                start DateTime('UTC'),
                local_day Date,
                interval_s UInt32,
                visitors_in Int64,
                visitors_out Int64,
                staff_in Int64,
                staff_out Int64,
                transactions Int64,
                passers_by Int64,
                late Bool,{SINK_COLUMNS},
                INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(start) ORDER BY (mall_id, level, key, start)
              TTL start + INTERVAL 90 DAY {DEDUP}""",
            *(f"""CREATE TABLE IF NOT EXISTS {{db}}.visitors_{grain} (
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                {moment} {moment_type},
                visitors_in Int64,
                visitors_out Int64,
                staff_in Int64,
                staff_out Int64,
                transactions Int64,
                passers_by Int64,
                late_rows UInt64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, level, key, {moment}) {ttl} {DEDUP}"""
              for grain, moment, moment_type, ttl in _VISITOR_GRAINS),
            *(f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.visitors_{grain}_mv TO {{db}}.visitors_{grain} AS
               SELECT mall_id, level, key, {expression} AS {moment},
                      sum(visitors_in) AS visitors_in, sum(visitors_out) AS visitors_out, sum(staff_in) AS staff_in,
                      sum(staff_out) AS staff_out, sum(transactions) AS transactions,
                      sum(passers_by) AS passers_by, countIf(late) AS late_rows
               FROM {{db}}.footfall_rollups GROUP BY mall_id, level, key, {moment}"""
              for (grain, moment, _, _), expression in zip(_VISITOR_GRAINS,
                                                           ("start", "toStartOfHour(start)", "local_day"))),
            f"""CREATE TABLE IF NOT EXISTS {{db}}.area_occupancy (
                row_id String,
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                start DateTime('UTC'),
                interval_s UInt32,
                occupancy Int64,
                occupancy_uncorrected Int64,
                density Nullable(Float64),
                departures Float64,
                dwell_s Nullable(Float64),{SINK_COLUMNS},
                INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(start) ORDER BY (mall_id, level, key, start)
              TTL start + INTERVAL 90 DAY {DEDUP}""",
            # Occupancy and dwell by hour outlive the minute rows: mean = occupancy_sum / samples.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.area_occupancy_hourly (
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                hour DateTime('UTC'),
                occupancy_sum Int64,
                samples UInt64,
                occupancy_peak SimpleAggregateFunction(max, Int64),
                departures Float64,
                dwell_seconds Float64
            ) ENGINE = SummingMergeTree ORDER BY (mall_id, level, key, hour) {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.area_occupancy_hourly_mv TO {db}.area_occupancy_hourly AS
               SELECT mall_id, level, key, toStartOfHour(start) AS hour, sum(occupancy) AS occupancy_sum,
                      count() AS samples, max(occupancy) AS occupancy_peak, sum(departed) AS departures,
                      sum(departed * ifNull(dwell_s, 0)) AS dwell_seconds
               FROM (SELECT *, departures AS departed FROM {db}.area_occupancy)
               GROUP BY mall_id, level, key, hour""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.area_days (
                row_id String,
                mall_id LowCardinality(String),
                level LowCardinality(String),
                key String,
                closed_at DateTime('UTC'),
                local_day Date,
                visitors_in Int64,
                visitors_out_counted Int64,
                residual Float64,
                exit_scale_used Float64,
                exit_scale_next Float64,
                dwell_littles_s Nullable(Float64),
                dwell_matched_s Nullable(Float64),{SINK_COLUMNS}
            ) ENGINE = MergeTree ORDER BY (mall_id, level, key, closed_at) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_stays (
                row_id String,
                mall_id LowCardinality(String),
                car_park_id LowCardinality(String),
                plate String,
                entry Nullable(DateTime64(3, 'UTC')),
                exit DateTime64(3, 'UTC'),
                exit_gate LowCardinality(String),
                duration_s Nullable(Float64),
                fee Nullable(Decimal(12, 2)),{SINK_COLUMNS},
                INDEX row_id_bloom row_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(exit) ORDER BY (mall_id, car_park_id, exit) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.parking_occupancy (
                event_id String,
                mall_id LowCardinality(String),
                car_park_id LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                occupancy UInt32,
                capacity UInt32,{SINK_COLUMNS},
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (mall_id, car_park_id, ts)
              TTL toDateTime(ts) + INTERVAL 90 DAY {DEDUP}""",
        ],
    ),
]
