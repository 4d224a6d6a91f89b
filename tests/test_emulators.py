"""Device emulators with real parts: a simulated day, sent as wire traffic, through the gateway to the broker."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from mallstream.devices.bridges import SERIAL_PROTOCOLS, Placed, placed_devices
from mallstream.devices.normalise import Decoded
from mallstream.settings import Device, GatewayConfig, Kafka, Mall, Mqtt, Settings, load
from mallstream.simulators.emulators import (
    BIT_FLIP,
    COUNTER_RESET,
    ENCODERS,
    GARBAGE,
    RECORD_LOST,
    REPEATED_PUSH,
    TRUNCATED,
    UINT16_ROLLOVER,
    DeviceEmulators,
    DeviceWire,
    Payload,
    WireFaults,
    device_of,
    gateway_decoder,
)
from mallstream.simulators.live import drive
from mallstream.simulators.mallday import MallDay, simulate
from mallstream.streams.records import FootfallTick, InputEvent, ParkingEvent, PosTransaction, RfidRead, encode
from tests.conftest import EXAMPLE_CONFIG, free_port
from tests.test_gateway import consume

pytestmark = pytest.mark.timeout(90)

#: A small day with enough VIPs for the readers to see; faults are off by default.
DAY = MallDay(visitors=300, vip_share=0.05, tick_seconds=300)
#: Counters whose reports carry the device's time; a Milesight VS350 live uplink is stamped on receipt.
TIMESTAMPED_COUNTERS = ("C-north", "C-south")


def reads_of(reads: Iterable[dict]) -> Counter[tuple]:
    """What a reader saw, whatever the transport kept of it: serial readers have no clock."""
    return Counter((r["reader_id"], r["antenna"], r["epc"], float(r["rssi_dbm"])) for r in reads)


def totals(ticks: Iterable[dict]) -> dict[str, tuple[int, int]]:
    """People in and out per counter."""
    per_counter: dict[str, tuple[int, int]] = {}
    for tick in ticks:
        count_in, count_out = per_counter.get(tick["counter_id"], (0, 0))
        per_counter[tick["counter_id"]] = (count_in + tick["in"], count_out + tick["out"])
    return per_counter


def parked(events: Iterable[dict]) -> Counter[tuple]:
    return Counter(
        (e["gate_id"], e["car_park_id"], e["plate"], e["direction"], dt.datetime.fromisoformat(e["ts"])) for e in events
    )


def as_json(records: Iterable[InputEvent]) -> list[dict]:
    return [json.loads(encode(record)) for record in records]


def as_r2000(placed: Placed) -> Placed:
    return Placed(placed.device.model_copy(update={"protocol": "r2000"}), placed.mall_id, placed.timezone, None)


def quiet(record: InputEvent) -> bool:
    return isinstance(record, FootfallTick) and record.count_in + record.count_out == 0


def example_devices() -> list[Placed]:
    """The example mall's devices, and its Chafon reader once more as an R2000: every protocol."""
    devices = placed_devices(load(EXAMPLE_CONFIG))
    devices.append(as_r2000(next(p for p in devices if p.device.protocol == "chafon-288m")))
    assert {p.device.protocol for p in devices} == set(ENCODERS)
    return devices


def through_driver(placed: Placed, wire: DeviceWire, records: Iterable[InputEvent]) -> Decoded:
    """What the gateway's driver makes of the units the device sends for ``records``; a serial line goes quiet at the end."""
    encode, decode = ENCODERS[placed.device.protocol](placed, wire), gateway_decoder(placed)
    received_at, decoded = dt.datetime.now(dt.UTC), Decoded()
    for record in records:
        for payload in encode(record):
            received_at += dt.timedelta(milliseconds=1)  # a VS350 uplink is stamped on receipt
            decoded.extend(decode(payload, received_at))
    if placed.device.protocol in SERIAL_PROTOCOLS:
        decoded.extend(decode(Payload(b""), received_at))
    return decoded


@pytest.mark.parametrize("multipart", [False, True])
def test_every_protocol_round_trips_through_the_gateway_drivers(multipart):
    """Each counter starts at its first busy interval: the zero baseline the emulator sends before
    the first report is what gets those people counted (the hub takes a first report as baseline only)."""
    day = simulate(load(EXAMPLE_CONFIG).malls[0], DAY).events
    for placed in example_devices():
        device_id = placed.device.id
        records = list(itertools.dropwhile(quiet, (r for r in day if device_of(r) == device_id)))
        decoded = through_driver(placed, DeviceWire(device_id, multipart_anpr=multipart), records)
        assert decoded.rejects == [], device_id
        sent, got = as_json(records), as_json(decoded.events)
        if isinstance(records[0], RfidRead):
            assert reads_of(got) == reads_of(sent), device_id
        elif isinstance(records[0], FootfallTick):
            assert totals(got) == totals(sent), device_id
        else:
            assert parked(got) == parked(sent), device_id


#: Every wire fault, often enough to hit each device several times in a small day.
FAULTS = WireFaults(corrupt_rate=0.15, counter_reset_rate=0.1, uint16_rollover=True, repeat_rate=0.1, seed=1)


@pytest.mark.parametrize("multipart", [False, True])
def test_wire_faults_cost_exactly_the_damaged_readings_and_never_a_person(multipart):
    """A damaged unit loses the reading it carried and every damaged byte is rejected; garbage
    between serial frames costs nothing; resets, rollovers and repeated reports change no count."""
    day = simulate(load(EXAMPLE_CONFIG).malls[0], DAY).events
    kinds = set()
    for placed in example_devices():
        device_id = placed.device.id
        records = [r for r in day if device_of(r) == device_id]
        wire = DeviceWire(device_id, FAULTS, multipart_anpr=multipart)
        decoded = through_driver(placed, wire, records)
        injected = wire.injected
        kinds |= {kind for _, kind in injected.faults}
        assert sum(len(reject.raw) for reject in decoded.rejects) == injected.corrupt_bytes[device_id], device_id
        sent, got = as_json(records), as_json(decoded.events)
        if isinstance(records[0], FootfallTick):
            assert totals(got) == totals(sent), device_id
            continue
        assert len(got) == len(sent) - injected.per_device(*RECORD_LOST)[device_id], device_id
        seen = reads_of if isinstance(records[0], RfidRead) else parked
        assert seen(got) <= seen(sent), device_id
    assert kinds == {BIT_FLIP, TRUNCATED, GARBAGE, COUNTER_RESET, UINT16_ROLLOVER, REPEATED_PUSH}


def test_serial_frames_wait_on_the_pseudo_terminal_and_speed_keeps_the_records_spacing():
    settings = Settings(
        malls=[Mall(id="m", rfid_readers=[Device(id="R-1", place="E-1", protocol="r2000", address="/dev/ttyUSB0")])],
        mqtt=Mqtt(mode="off"),
    )
    t0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
    reads = [
        RfidRead(
            reader_id="R-1",
            antenna=2,
            epc=f"E280116000000000000000{n:02X}",
            rssi_dbm=-50.0,
            ts=t0 + dt.timedelta(seconds=n),
        )
        for n in range(3)
    ]
    with DeviceEmulators(settings) as emulators:
        [reader] = emulators.settings.malls[0].rfid_readers
        started = time.monotonic()
        assert emulators.play(reads, speed=10) == {"R-1": 3}
        assert 0.2 <= time.monotonic() - started < 0.5  # two seconds of event time at ten times real time
        decode, decoded = gateway_decoder(placed_devices(emulators.settings)[0]), Decoded()
        port = os.open(reader.address, os.O_RDONLY | os.O_NONBLOCK)
        try:  # the terminal hands the last write over a moment later
            deadline = time.monotonic() + 5
            while len(decoded.events) < len(reads) and time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError):
                    decoded.extend(decode(Payload(os.read(port, 4096)), t0))
                time.sleep(0.01)
        finally:
            os.close(port)
    assert reads_of(as_json(decoded.events)) == reads_of(as_json(reads))


def live_settings(broker: str, mosquitto: int, tmp_path: Path) -> Settings:
    """The example mall with this test's broker, Mosquitto, push port and spool."""
    return load(EXAMPLE_CONFIG).model_copy(
        update={
            "kafka": Kafka(mode="external", bootstrap_servers=broker, partitions=2),
            "mqtt": Mqtt(mode="external", port=mosquitto),
            "gateway": GatewayConfig(http_host="127.0.0.1", http_port=free_port(), spool_path=tmp_path / "spool.db"),
        }
    )


@pytest.mark.pipeline
def test_a_simulated_day_played_through_emulated_devices_arrives_on_the_broker_as_simulated(
    broker, mosquitto, tmp_path
):
    settings = live_settings(broker, mosquitto, tmp_path)
    day = simulate(settings.malls[0], DAY).events
    kinds = (RfidRead, FootfallTick, ParkingEvent, PosTransaction)
    simulated = {kind: as_json(e for e in day if isinstance(e, kind)) for kind in kinds}
    protocols = {d.id: d.protocol for d in settings.malls[0].rfid_readers}
    assert {protocols[r["reader_id"]] for r in simulated[RfidRead]} >= {"chafon-288m", "zebra-fx"}
    assert len(simulated[ParkingEvent]) > 20 and len(simulated[PosTransaction]) > 20

    run = drive(settings, lambda emulators: emulators.play(day))
    assert sum(run.played.values()) == len(day)  # devices and tills alike
    reads = [json.loads(r.value) for r in consume(broker, "rfid.reads", len(simulated[RfidRead]))]
    ticks = [json.loads(r.value) for r in consume(broker, "footfall.ticks", len(simulated[FootfallTick]))]
    parking = [json.loads(r.value) for r in consume(broker, "parking.events", len(simulated[ParkingEvent]))]
    receipts = consume(broker, "pos.transactions", len(simulated[PosTransaction]))
    assert consume(broker, "deadletters", 0, timeout=1) == []
    assert reads_of(reads) == reads_of(simulated[RfidRead])

    # Xovis, Axis and Milesight report running totals. The hub takes a counter's first report as
    # its baseline only; the emulators send a zero baseline at the start of each counter's first
    # interval, so every simulated person is counted and the totals per counter agree exactly.
    assert totals(ticks) == totals(simulated[FootfallTick])
    assert all(total != (0, 0) for total in totals(ticks).values())

    def intervals(ticks: list[dict]) -> set[tuple]:
        return {
            (t["counter_id"], dt.datetime.fromisoformat(t["ts"]), t["in"], t["out"], t["interval_s"])
            for t in ticks
            if t["counter_id"] in TIMESTAMPED_COUNTERS
        }

    assert intervals(ticks) == intervals(simulated[FootfallTick])  # counters with a clock: tick by tick
    assert parked(parking) == parked(simulated[ParkingEvent])

    # Tills publish through the integrators' PosProducer: keyed by the sale, so a return meets its sale.
    sales = {r["txn_id"]: r.get("original_txn_id") or r["txn_id"] for r in simulated[PosTransaction]}
    assert {(r.key.decode(), json.loads(r.value)["txn_id"]) for r in receipts} == {(k, t) for t, k in sales.items()}
    assert any(key != txn for txn, key in sales.items())  # returns are in the day


def dead_letter_bytes(letter: dict) -> int:
    """Bytes the gateway received for a dead letter: it keeps bytes that are not UTF-8 as ``\\xNN``."""
    return len(re.sub(r"\\x[0-9a-f]{2}", "?", letter["payload"]).encode())


@pytest.mark.pipeline
def test_wire_faults_through_the_gateway_dead_letter_exactly_the_damaged_bytes_and_keep_every_person(
    broker, mosquitto, tmp_path
):
    settings = live_settings(broker, mosquitto, tmp_path)
    day = [record for record in simulate(settings.malls[0], DAY).events if not isinstance(record, PosTransaction)]
    run = drive(settings, lambda emulators: emulators.play(day), faults=FAULTS)
    injected, sent = run.injected, Counter(device_of(record) for record in day)
    lost = injected.per_device(*RECORD_LOST)
    assert {kind for _, kind in injected.faults} == {
        BIT_FLIP,
        TRUNCATED,
        GARBAGE,
        COUNTER_RESET,
        UINT16_ROLLOVER,
        REPEATED_PUSH,
    }

    simulated = {
        kind: as_json(e for e in day if isinstance(e, kind)) for kind in (RfidRead, FootfallTick, ParkingEvent)
    }
    reads = [json.loads(r.value) for r in consume(broker, "rfid.reads", 1, timeout=5)]
    parking = [json.loads(r.value) for r in consume(broker, "parking.events", 1, timeout=5)]
    ticks = [json.loads(r.value) for r in consume(broker, "footfall.ticks", 1, timeout=5)]
    letters = [json.loads(r.value) for r in consume(broker, "deadletters", 1, timeout=5)]

    # Everything was delivered before drive() returned: each reader and gate lost exactly its damaged readings.
    arrived = Counter(r["reader_id"] for r in reads) + Counter(p["gate_id"] for p in parking)
    assert arrived == Counter({device: sent[device] - lost[device] for device in arrived | lost})
    assert reads_of(reads) <= reads_of(simulated[RfidRead]) and parked(parking) <= parked(simulated[ParkingEvent])

    # Every damaged byte, and nothing else, is on the dead-letter topic with a reason; a damaged
    # push (one body) is one letter, a damaged stream may be cut into several.
    letter_bytes: Counter[str] = Counter()
    for letter in letters:
        letter_bytes[letter["source"]] += dead_letter_bytes(letter)
        assert letter["reason"]
    assert letter_bytes == +injected.corrupt_bytes
    gates = {gate.id for park in settings.malls[0].car_parks for gate in park.gates}
    assert Counter(letter["source"] for letter in letters if letter["source"] in gates) == +Counter(
        {gate: lost[gate] for gate in gates}
    )

    assert totals(ticks) == totals(simulated[FootfallTick])  # resets, rollovers and repeats: nobody lost or invented
