"""Device emulators with real parts: a simulated day, sent as wire traffic, through the gateway to the broker."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Iterable

import pytest

from mallstream.devices.bridges import MqttBridge, Placed, placed_devices, start_bridges
from mallstream.devices.gateway import Gateway
from mallstream.devices.normalise import Decoded
from mallstream.devices.spool import Spool
from mallstream.settings import Gateway as GatewaySettings
from mallstream.settings import Device, Kafka, Mall, Mqtt, Settings, load
from mallstream.simulators.emulators import ENCODERS, DeviceEmulators, Payload, device_of, gateway_decoder
from mallstream.simulators.mallday import MallDay, simulate
from mallstream.streams.records import FootfallTick, InputEvent, ParkingEvent, RfidRead, encode
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
    return Counter((e["gate_id"], e["car_park_id"], e["plate"], e["direction"], dt.datetime.fromisoformat(e["ts"]))
                   for e in events)


def as_json(records: Iterable[InputEvent]) -> list[dict]:
    return [json.loads(encode(record)) for record in records]


def as_r2000(placed: Placed) -> Placed:
    return Placed(placed.device.model_copy(update={"protocol": "r2000"}), placed.mall_id, placed.timezone, None)


def quiet(record: InputEvent) -> bool:
    return isinstance(record, FootfallTick) and record.count_in + record.count_out == 0


@pytest.mark.parametrize("multipart", [False, True])
def test_every_protocol_round_trips_through_the_gateway_drivers(multipart):
    """Each counter starts at its first busy interval: the zero baseline the emulator sends before
    the first report is what gets those people counted (the hub takes a first report as baseline only)."""
    settings = load(EXAMPLE_CONFIG)
    day = simulate(settings.malls[0], DAY).events
    devices = placed_devices(settings)
    devices.append(as_r2000(next(p for p in devices if p.device.protocol == "chafon-288m")))
    assert {p.device.protocol for p in devices} == set(ENCODERS)
    for placed in devices:
        encode_record, decode_payload = ENCODERS[placed.device.protocol](placed, multipart), gateway_decoder(placed)
        device_id = placed.device.id
        records = list(itertools.dropwhile(quiet, (r for r in day if device_of(r) == device_id)))
        received_at = dt.datetime.now(dt.UTC)
        decoded = Decoded()
        for record in records:
            for payload in encode_record(record):
                decoded.extend(decode_payload(payload, received_at))
        assert decoded.rejects == [], device_id
        sent, got = as_json(records), as_json(decoded.events)
        if isinstance(records[0], RfidRead):
            assert reads_of(got) == reads_of(sent), device_id
        elif isinstance(records[0], FootfallTick):
            assert totals(got) == totals(sent), device_id
        else:
            assert parked(got) == parked(sent), device_id


def test_serial_frames_wait_on_the_pseudo_terminal_and_speed_keeps_the_records_spacing():
    settings = Settings(malls=[Mall(id="m", rfid_readers=[
        Device(id="R-1", place="E-1", protocol="r2000", address="/dev/ttyUSB0")])], mqtt=Mqtt(mode="off"))
    t0 = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
    reads = [RfidRead(reader_id="R-1", antenna=2, epc=f"E280116000000000000000{n:02X}", rssi_dbm=-50.0,
                      ts=t0 + dt.timedelta(seconds=n)) for n in range(3)]
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


@pytest.mark.pipeline
def test_a_simulated_day_played_through_emulated_devices_arrives_on_the_broker_as_simulated(broker, mosquitto, tmp_path):  # noqa: F811
    http_port = free_port()
    settings = load(EXAMPLE_CONFIG).model_copy(update={
        "kafka": Kafka(mode="external", bootstrap_servers=broker, partitions=2),
        "mqtt": Mqtt(mode="external", port=mosquitto),
        "gateway": GatewaySettings(http_host="127.0.0.1", http_port=http_port),
    })
    day = simulate(settings.malls[0], DAY).events
    simulated = {kind: as_json(e for e in day if isinstance(e, kind)) for kind in (RfidRead, FootfallTick, ParkingEvent)}
    protocols = {d.id: d.protocol for d in settings.malls[0].rfid_readers}
    assert {protocols[r["reader_id"]] for r in simulated[RfidRead]} >= {"chafon-288m", "zebra-fx"}
    assert len(simulated[ParkingEvent]) > 20

    with DeviceEmulators(settings, multipart_anpr=True) as emulators:
        gateway = Gateway(Spool(tmp_path / "spool.db"), settings.kafka).start()
        bridges = start_bridges(emulators.settings, gateway, http_address=("127.0.0.1", http_port))
        try:
            [mqtt_bridge] = [bridge for bridge in bridges if isinstance(bridge, MqttBridge)]
            assert mqtt_bridge.subscribed.wait(10) and emulators.wait_for_serial_readers()
            played = emulators.play(day)
            assert sum(played.values()) == sum(map(len, simulated.values()))

            reads = [json.loads(r.value) for r in consume(broker, "rfid.reads", len(simulated[RfidRead]))]
            ticks = [json.loads(r.value) for r in consume(broker, "footfall.ticks", len(simulated[FootfallTick]))]
            parking = [json.loads(r.value) for r in consume(broker, "parking.events", len(simulated[ParkingEvent]))]
            dead_letters = consume(broker, "deadletters", 0, timeout=1)
        finally:
            for bridge in bridges:
                bridge.close()
            gateway.close()

    assert dead_letters == []
    assert reads_of(reads) == reads_of(simulated[RfidRead])

    # Xovis, Axis and Milesight report running totals. The hub takes a counter's first report as
    # its baseline only; the emulators send a zero baseline at the start of each counter's first
    # interval, so every simulated person is counted and the totals per counter agree exactly.
    assert totals(ticks) == totals(simulated[FootfallTick])
    assert all(total != (0, 0) for total in totals(ticks).values())

    def intervals(ticks: list[dict]) -> set[tuple]:
        return {(t["counter_id"], dt.datetime.fromisoformat(t["ts"]), t["in"], t["out"], t["interval_s"])
                for t in ticks if t["counter_id"] in TIMESTAMPED_COUNTERS}

    assert intervals(ticks) == intervals(simulated[FootfallTick])  # counters with a clock: tick by tick

    assert parked(parking) == parked(simulated[ParkingEvent])
