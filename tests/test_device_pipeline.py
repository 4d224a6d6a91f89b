"""Simulator to ClickHouse with every real part between: pty + Mosquitto + HTTP -> gateway -> broker -> worker.

A simulated day with faults is played as wire traffic through the emulated devices; the
worker stores what arrives. The counts in ClickHouse are checked against the day's ground
truth, allowing exactly for what the fault knobs did, and, with the broker stopped for
30 s (10 s in CI; MALLSTREAM_SCALE above 1 for the full length) in the middle of the day,
every event is still stored exactly once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mallstream.devices.bridges import MqttBridge, start_bridges
from mallstream.devices.gateway import Gateway
from mallstream.devices.spool import Spool
from mallstream.replay import wait_until_processed
from mallstream.settings import Settings, load
from mallstream.simulators import mallday
from mallstream.simulators.emulators import DeviceEmulators
from mallstream.streams.records import FootfallTick, InputEvent, ParkingEvent, RfidRead, decode_input
from tests.conftest import SCALE, WorkerProcess, cli, free_port, write_config
from tests.test_gateway import broker_down, broker_up

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(300)]


def hub(tmp_path: Path, broker: str, mosquitto: int) -> tuple[Path, Settings]:
    config = write_config(
        tmp_path,
        broker,
        mqtt={"mode": "external", "port": mosquitto},
        gateway={
            "http_host": "127.0.0.1",
            "http_port": free_port(),
            "spool_path": str(tmp_path / "spool.sqlite3"),
            "health_interval": 1.0,
        },
    )
    return config, load(config)


@contextlib.contextmanager
def gateway_with_devices(settings: Settings) -> Iterator[DeviceEmulators]:
    """Emulated devices wired to an in-process gateway, as `mallstream gateway` runs them."""
    conf = settings.gateway
    with DeviceEmulators(settings, multipart_anpr=True) as emulators:
        gateway = Gateway(
            Spool(conf.spool_path), settings.kafka, settings.worker.app_id, health_interval=conf.health_interval
        ).start()
        bridges = start_bridges(
            emulators.settings, gateway, http_address=(conf.http_host, conf.http_port), keys=emulators.push_key
        )  # the devices log in with basic auth
        try:
            [mqtt_bridge] = [bridge for bridge in bridges if isinstance(bridge, MqttBridge)]
            assert mqtt_bridge.subscribed.wait(30) and emulators.wait_for_serial_readers()
            yield emulators
            assert gateway.drained(timeout=120), "the gateway did not deliver its spool"
        finally:
            for bridge in bridges:
                bridge.close()
            gateway.close()


def stored(config: Path, query: str) -> list[dict]:
    result = cli(config, "sql", query, "--format", "json")
    return [json.loads(line) for line in result.stdout.splitlines() if line]


def device_events(events: list[InputEvent]) -> list[InputEvent]:
    return [event for event in events if isinstance(event, RfidRead | FootfallTick | ParkingEvent)]


def stored_counts(config: Path) -> dict[str, Counter]:
    """Per device what ClickHouse holds, and how many distinct events (the same event twice would show)."""
    counts: dict[str, Counter] = {}
    for table, device, measure in (
        ("rfid_reads", "reader_id", "count()"),
        ("footfall_ticks", "counter_id", "sum(count_in) * 1000000 + sum(count_out)"),
        ("parking_events", "gate_id", "count()"),
    ):
        rows = stored(
            config,
            f"SELECT {device} AS device, {measure} AS n, count() - uniqExact(event_id) AS doubled "
            f"FROM {{db}}.{table} GROUP BY device",
        )
        assert all(row["doubled"] == 0 for row in rows), f"{table} holds an event twice: {rows}"
        counts[table] = Counter({row["device"]: int(row["n"]) for row in rows})
    return counts


def simulated_counts(events: list[InputEvent]) -> dict[str, Counter]:
    counts = {"rfid_reads": Counter(), "footfall_ticks": Counter(), "parking_events": Counter()}
    for event in events:
        if isinstance(event, RfidRead):
            counts["rfid_reads"][event.reader_id] += 1
        elif isinstance(event, FootfallTick):
            counts["footfall_ticks"][event.counter_id] += event.count_in * 1_000_000 + event.count_out
        elif isinstance(event, ParkingEvent):
            counts["parking_events"][event.gate_id] += 1
    return counts


def repeats_within_a_second(reads: list[RfidRead]) -> Counter:
    """Per reader, reads of a tag on an antenna less than a second after its last unmarked read."""
    last_fresh: dict[tuple, dt.datetime] = {}
    repeats: Counter = Counter()
    for read in reads:
        key = (read.reader_id, read.antenna, read.epc)
        if key in last_fresh and abs(read.ts - last_fresh[key]) < dt.timedelta(seconds=1):
            repeats[read.reader_id] += 1
        else:
            last_fresh[key] = read.ts
    return repeats


def test_a_faulty_day_counted_in_clickhouse_equals_the_ground_truth_less_what_the_faults_did(
    broker, mosquitto, tmp_path
):
    config, settings = hub(tmp_path, broker, mosquitto)
    mall = settings.malls[0]
    # the outage scenario: duplicate reads, a reader's clock 90 s fast, late events, a counter
    # down 14:00-15:00 (backlog replayed) and a reader down 16:00-16:30 (its reads lost)
    day = replace(mallday.scenario("outage", mall, duration=dt.timedelta(hours=7)), visitors=2500, vip_share=0.05)
    simulated = mallday.simulate(mall, day)
    events = device_events(simulated.events)
    truth = simulated.truth

    with WorkerProcess(config, tmp_path / "worker.log"):
        with gateway_with_devices(settings) as emulators:
            emulators.play(events)
        assert wait_until_processed(settings, timeout=120, progress=False)
        counts = stored_counts(config)
        marked = stored(config, "SELECT reader_id, countIf(duplicate) AS n FROM {db}.rfid_reads GROUP BY reader_id")

    # footfall: every person the counters saw, customers and staff, per counter; the counter down
    # 14:00-15:00 replayed its backlog, so nobody is missing
    place_of = {counter.id: counter for counter in mall.people_counters}
    for counter_id, counted in counts["footfall_ticks"].items():
        counter = place_of[counter_id]
        people = [truth.visitors] + ([] if counter.excludes_staff else [truth.staff])
        true_in = sum(hour["in"] for by_place in people for hour in by_place.get(counter.place, {}).values())
        true_out = sum(hour["out"] for by_place in people for hour in by_place.get(counter.place, {}).values())
        assert divmod(counted, 1_000_000) == (true_in, true_out), counter_id
    assert set(counts["footfall_ticks"]) == set(place_of)
    assert truth.faults["backlogged"]  # the outage did hold ticks back

    # parking: one entry and one exit per true stay that ended within the day
    gate_direction = {gate.id: gate.direction for park in mall.car_parks for gate in park.gates}
    entries = sum(n for gate, n in counts["parking_events"].items() if gate_direction[gate] == "entry")
    exits = sum(n for gate, n in counts["parking_events"].items() if gate_direction[gate] == "exit")
    assert entries == len(truth.parking_stays) > 0
    assert exits == sum(1 for stay in truth.parking_stays if stay["exit"]) > 0

    # RFID: what the readers sent, with the duplicates they sent marked, less the reads lost
    # while a reader was down
    assert counts == simulated_counts(events)
    # Readers report a tag once per second per antenna and mark repeats within it, the
    # simulated duplicates among them; serial readers have no clock (stamped on receipt), so
    # only the readers that send their own time can be checked read by read.
    clocked = {reader.id for reader in mall.rfid_readers if reader.protocol in ("zebra-fx", "impinj-r700")}
    assert {
        row["reader_id"]: int(row["n"]) for row in marked if row["reader_id"] in clocked
    } == repeats_within_a_second([e for e in events if isinstance(e, RfidRead) and e.reader_id in clocked])
    assert truth.faults["duplicate_reads"] > 0
    assert sum(truth.faults["lost"].values()) > 0


#: How long the broker is down while the devices go on sending.
BROKER_OUTAGE_S = 30 if SCALE > 1 else 10


@pytest.mark.heavy
@pytest.mark.alone
def test_a_broker_outage_during_a_simulation_stores_every_event_exactly_once(broker, mosquitto, tmp_path):
    config, settings = hub(tmp_path, broker, mosquitto)
    mall = settings.malls[0]
    day = mallday.scenario("weekday", mall, duration=dt.timedelta(hours=2))
    events = device_events(mallday.simulate(mall, replace(day, visitors=800, vip_share=0.03)).events)
    span = (events[-1].ts - events[0].ts).total_seconds()

    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        with gateway_with_devices(settings) as emulators:
            playing = threading.Thread(
                target=emulators.play, args=(events,), kwargs={"speed": span / (BROKER_OUTAGE_S + 15)}
            )
            playing.start()
            time.sleep(5)
            broker_down(broker, tmp_path)
            time.sleep(BROKER_OUTAGE_S)
            broker_up(broker, tmp_path)
            playing.join()
        assert worker.process.poll() is None, "the worker did not survive the outage"
        assert wait_until_processed(settings, timeout=120, progress=False)
        assert stored_counts(config) == simulated_counts(events)


def test_a_recorded_day_replayed_twice_is_stored_once(broker, tmp_path):
    config = write_config(tmp_path, broker)
    recording = tmp_path / "day.jsonl"
    cli(
        config,
        "simulate",
        "day",
        "--scenario",
        "outage",
        "--duration",
        "7",
        "--visitors",
        "1500",
        "--record",
        str(recording),
    )
    events = device_events([decode_input(line) for line in recording.read_bytes().splitlines()])
    with WorkerProcess(config, tmp_path / "worker.log"):
        for _ in range(2):
            cli(config, "replay", str(recording), "--wait")
        assert stored_counts(config) == simulated_counts(events)
