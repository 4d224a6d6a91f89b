"""``mallstream bench``: figures for the parts that do not need a broker.

(a) the pure rule core, receipts/s; (d) the ClickHouse sink on the embedded
engine, rows/s, including its duplicate check and the materialized view;
(devices) each device protocol's gateway driver, frames/s.
End-to-end figures come from ``mallstream replay --wait`` against a running worker, ``--e2e``
(:mod:`.bench_e2e`) and ``--history`` (:mod:`.bench_history`: months of history, Kafka bytes and
ClickHouse rows per event).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from mallstream.devices.bridges import Placed
from mallstream.settings import ClickHouse, Device
from mallstream.simulators.emulators import ENCODERS, DeviceWire, gateway_decoder
from mallstream.simulators.pos import PosDay, receipts
from mallstream.sinks.clickhouse import SourcePosition, TableSink, sourced
from mallstream.sinks.tables import LEDGER_TABLE
from mallstream.sinks.warehouse import open_warehouse
from mallstream.streams.records import FootfallTick, InputEvent, LedgerEntry, ParkingEvent, RfidRead

from .bench_engine import bench_engine
from .bench_footfall import bench_footfall
from .bench_vip import bench_vip

#: Device protocols whose gateway drivers are benched.
DEVICE_PROTOCOLS = ("chafon-288m", "r2000", "zebra-fx", "impinj-r700", "xovis", "hikvision-isapi")
_BENCH_START = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def _ledger_entries(count: int) -> list[LedgerEntry]:
    """A points entry per receipt of a simulated day, as the loyalty agent writes them."""
    day = PosDay(stores=("S101",), members=5000)
    return [
        LedgerEntry(
            entry_id=f"{txn.txn_id}:points_earned:points:earn-base:",
            mall_id="mall",
            member_id=txn.member_id or "anonymous",
            account="points",
            delta=int(txn.total),
            balance_after=0,
            cause="points_earned",
            txn_id=txn.txn_id,
            store_id=txn.store_id,
            ts=txn.ts,
            business_day=txn.business_day,
            rule_id="earn-base",
            rule_version="1-bench",
        )
        for txn in receipts(day, count)
    ]


def bench_sink(rows: int, batch_rows: int) -> float:
    """Rows per second into the embedded engine through TableSink (key check + insert + view), as the sink lane
    hands it batches of ``batch_rows``."""
    with tempfile.TemporaryDirectory() as scratch:
        warehouse = open_warehouse(ClickHouse(path=Path(scratch) / "ch"))
        warehouse.migrate()
        sink = TableSink(warehouse, LEDGER_TABLE.name, LEDGER_TABLE.columns)
        first, *entries = [
            sourced(LEDGER_TABLE.row(entry), SourcePosition("ledger", 0, offset))
            for offset, entry in enumerate(_ledger_entries(rows + 1))
        ]
        # once per process, not per row: the table's types are asked, the staging table is created
        sink.write([first])
        started = time.perf_counter()
        with tqdm(total=len(entries), desc=f"sink, batches of {batch_rows}", leave=False) as progress:
            for start in range(0, len(entries), batch_rows):
                batch = entries[start : start + batch_rows]
                sink.write(batch)
                progress.update(len(batch))
        elapsed = time.perf_counter() - started
        warehouse.close()
    return len(entries) / elapsed


def _nth(index: int, step_s: float) -> dt.datetime:
    return _BENCH_START + dt.timedelta(seconds=index * step_s)


def _device_records(protocol: str, count: int) -> list[InputEvent]:
    """Distinct reads, busy ticks or plates, so no driver can skip work as a duplicate."""
    if protocol == "xovis":
        return [
            FootfallTick(counter_id="C-bench", ts=_nth(i, 60), count_in=i % 7, count_out=i % 5) for i in range(count)
        ]
    if protocol == "hikvision-isapi":
        return [
            ParkingEvent(
                gate_id="G-bench", car_park_id="P-bench", plate=f"沪A{i:06d}", direction="entry", ts=_nth(i, 20)
            )
            for i in range(count)
        ]
    return [
        RfidRead(
            reader_id="R-bench", antenna=1 + i % 4, epc=f"E2801160{i:016X}", rssi_dbm=-40.0 - i % 40, ts=_nth(i, 0.1)
        )
        for i in range(count)
    ]


def bench_device_parser(protocol: str, count: int) -> float:
    """Frames per second through one protocol's gateway driver, decoding only (no spool, no broker).

    A frame is what a device sends for one record, encoded beforehand by the device emulators:
    a one-tag inventory answer on a serial line, one MQTT message, one HTTP push.
    """
    device = Device(
        id="bench",
        place="bench",
        protocol=protocol,
        address="/bench",
        direction="entry",
        routes={"80:1F:12:AA:BB:CC/1": "in", "80:1F:12:AA:BB:CC/2": "out"},
    )
    placed = Placed(device, "mall", "UTC", "P-bench")
    encode = ENCODERS[protocol](placed, DeviceWire(device.id))
    records = _device_records(protocol, count)
    frames = [
        payload for record in tqdm(records, desc=f"encoding {protocol}", leave=False) for payload in encode(record)
    ]
    decode = gateway_decoder(placed)
    started = time.perf_counter()
    for frame in frames:
        decode(frame, _BENCH_START)
    return len(frames) / (time.perf_counter() - started)


def run(count: int) -> list[tuple[str, str]]:
    figures = [
        ("(a) loyalty engine, receipts/s (every rule kind on)", f"{bench_engine(count):,.0f}"),
        ("(a) footfall core, ticks/s", f"{bench_footfall(count):,.0f}"),
        ("(a) VIP core, reads/s", f"{bench_vip(count):,.0f}"),
        ("(d) ClickHouse sink rows/s, batches of 5,000", f"{bench_sink(count, 5_000):,.0f}"),
        ("(d) ClickHouse sink rows/s, batches of 50,000", f"{bench_sink(count, 50_000):,.0f}"),
    ]
    for protocol in DEVICE_PROTOCOLS:
        figures.append((f"(devices) {protocol} parser frames/s", f"{bench_device_parser(protocol, count):,.0f}"))
    return figures
