"""The device gateway with real parts: a pseudo-terminal, Mosquitto, HTTP, and the noida-db broker going down."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaConsumer

from mallstream.auth import KeyStore
from mallstream.devices.bridges import BridgeConfigError, MqttBridge, start_bridges
from mallstream.devices.gateway import HEALTH_TOPIC, Gateway, run_gateway
from mallstream.devices.normalise import Decoded
from mallstream.devices.rfid_serial import Tag
from mallstream.devices.spool import Message, Spool, SpoolFull
from mallstream.services import wait_for_port
from mallstream.settings import CarPark, Device, GatewayConfig, Kafka, Mall, Mqtt, Settings
from mallstream.simulators.rfid_frames import chafon_inventory, zebra_payload, zebra_tag_event
from mallstream.streams.records import RfidRead
from tests.conftest import NOIDA, free_port

pytestmark = pytest.mark.timeout(60)

SERIAL = "80:1F:12:AA:BB:CC"
FORWARD = 1008001


def tag(n: int, antenna: int = 1) -> Tag:
    return Tag(antenna, bytes.fromhex(f"E2000017221101441890{n:04X}"), -50.0)


def read(reader_id: str, n: int) -> RfidRead:
    return RfidRead(
        reader_id=reader_id,
        antenna=1,
        epc=tag(n).epc.hex().upper(),
        rssi_dbm=-50.0,
        ts=dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC) + dt.timedelta(seconds=n),
    )


def consume(bootstrap: str, topic: str, count: int, timeout: float = 15.0) -> list:
    """The first ``count`` records of ``topic`` (all partitions), waiting up to ``timeout``; then any extra."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=300,
    )
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(records) < count:
            records.extend(consumer)
        records.extend(consumer)  # anything beyond count: duplicates would show up here
    finally:
        consumer.close()
    return records


def until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def broker_down(bootstrap: str, tmp_path: Path) -> None:
    subprocess.run([NOIDA, "down", "--data-dir", str(tmp_path / "broker")], check=True, capture_output=True)


def broker_up(bootstrap: str, tmp_path: Path) -> None:
    """The conftest broker again: same port, same data directory."""
    port = bootstrap.rpartition(":")[2]
    subprocess.run(
        [NOIDA, "up", "--only", "kafka", "--kafka-port", port, "--data-dir", str(tmp_path / "broker")],
        check=True,
        capture_output=True,
    )
    assert wait_for_port("127.0.0.1", int(port))


# --- spool ---------------------------------------------------------------------------------------


def test_spool_keeps_order_across_reopen_and_forgets_only_what_was_acknowledged(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    spool.append([Message("t", b"k", f"v{i}".encode()) for i in range(5)])
    first = spool.peek(3)
    spool.ack(first[1].id)
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert [s.message.value for s in reopened.peek(10)] == [b"v2", b"v3", b"v4"]
    assert len(reopened) == 3 and reopened.bytes == 3 * (2 + 1)
    reopened.ack(reopened.peek(10)[-1].id)
    reopened.append([Message("t", b"k", b"v5")])  # after the file's deleted ones: found all the same
    assert [s.message.value for s in reopened.peek(10)] == [b"v5"]


def test_a_full_spool_refuses_the_whole_append_and_counts_it(tmp_path):
    spool = Spool(tmp_path / "spool.db", max_bytes=100)
    spool.append([Message("t", None, b"x" * 60)])
    with pytest.raises(SpoolFull, match="limit of 100 bytes"):
        spool.append([Message("t", None, b"y" * 20), Message("t", None, b"z" * 30)])
    assert spool.refused == 2 and [s.message.value for s in spool.peek(10)] == [b"x" * 60]


class HeldFile:
    """Another connection holding the spool file's write lock: the spool's commits wait, as behind a stalled disk."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


def test_an_append_can_be_peeked_before_its_commit_returns_and_is_durable_after(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    spool.append([Message("t", b"k", b"v0")])  # the file exists, with its schema
    held = HeldFile(tmp_path / "spool.db")
    appending = threading.Thread(target=spool.append, args=([Message("t", b"k", b"v1")],))
    appending.start()
    assert until(lambda: [s.message.value for s in spool.peek(10)] == [b"v0", b"v1"], 2)
    time.sleep(0.3)
    assert appending.is_alive()  # append returns only once committed
    held.release()
    appending.join(5)
    assert not appending.is_alive()
    spool.ack(spool.peek(1)[0].id)
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert [s.message.value for s in reopened.peek(10)] == [b"v1"] and len(reopened) == 1


def test_the_backlog_beyond_memory_is_read_back_from_the_file_in_order(tmp_path):
    spool = Spool(tmp_path / "spool.db", memory_bytes=100)
    for n in range(50):
        spool.append([Message("t", None, f"{n:04d}".encode())])
    values, after = [], 0
    while batch := spool.peek(7, after=after):
        values.extend(s.message.value.decode() for s in batch)
        after = batch[-1].id
    assert values == [f"{n:04d}" for n in range(50)]


SPOOL_WRITER = """
import sys
from mallstream.devices.spool import Message, Spool
spool = Spool(sys.argv[1])
for batch in range(100000):
    spool.append([Message("t", b"k", f"{batch}:{i}".encode()) for i in range(10)])
    print(batch, flush=True)
"""


def test_every_append_that_returned_survives_sigkill(tmp_path):
    path = tmp_path / "spool.db"
    writer = subprocess.Popen([sys.executable, "-c", SPOOL_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    lines = [writer.stdout.readline() for _ in range(50)]
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    confirmed = int(lines[-1])
    values = [s.message.value.decode() for s in Spool(path).peek(10**6)]
    assert len(values) % 10 == 0 and len(values) >= (confirmed + 1) * 10  # whole batches only, none lost
    assert values == [f"{b}:{i}" for b in range(len(values) // 10) for i in range(10)]


# --- bridges end to end ----------------------------------------------------------------------------


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal: the test writes to the master, the gateway opens the slave like a serial port."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def xovis_push(package_id: int, value: int, time_ms: int) -> bytes:
    return json.dumps(
        {
            "live_data": {
                "package_info": {"version": "5.0", "id": package_id, "agent_id": 7},
                "sensor_info": {"serial_number": SERIAL, "type": "PC2SE"},
                "frames": [
                    {
                        "framenumber": 1,
                        "time": time_ms,
                        "tracked_objects": [],
                        "events": [
                            {
                                "category": "COUNT",
                                "type": "COUNT_INCREMENT",
                                "attributes": {"counter_id": FORWARD, "counter_value": value},
                            },
                        ],
                    }
                ],
            }
        }
    ).encode()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def announce_body(port: int, path: str, length: int, headers: dict[str, str] | None = None) -> int:
    """The status a POST gets from its headers alone: a server refusing a body too large does not read it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest("POST", path)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def hub_settings(bootstrap: str, mqtt_port: int, serial_path: str) -> Settings:
    return Settings(
        malls=[
            Mall(
                id="mall-1",
                rfid_readers=[
                    Device(id="R-north", place="E-north", protocol="chafon-288m", address=serial_path),
                    Device(id="R-vip", place="Z-vip", protocol="zebra-fx", address="zebra/R-vip/data"),
                ],
                people_counters=[
                    Device(
                        id="C-north",
                        place="E-north",
                        protocol="xovis",
                        address="/push/xovis",
                        routes={f"{SERIAL}/{FORWARD}": "in"},
                    )
                ],
            )
        ],
        kafka=Kafka(mode="external", bootstrap_servers=bootstrap, partitions=2),
        mqtt=Mqtt(mode="external", port=mqtt_port),
    )


def test_serial_mqtt_and_http_devices_arrive_on_their_topics_keyed_by_device(broker, mosquitto, pty_pair, tmp_path):
    master, serial_path = pty_pair
    settings = hub_settings(broker, mosquitto, serial_path)
    http_port = free_port()
    gateway = Gateway(Spool(tmp_path / "spool.db"), settings.kafka, health_interval=0.5).start()
    keys = KeyStore(tmp_path / "keys.json")
    _, key = keys.create("xovis-north", "device")
    device = {"X-Api-Key": key}  # the shared-secret header, as a people counter is configured to send
    bridges = start_bridges(settings, gateway, http_address=("127.0.0.1", http_port), keys=keys)
    try:
        # Serial: garbage, a frame cut in two, and a stray length byte that hides the next frame until the line is quiet.
        first, second = chafon_inventory([tag(1), tag(2)]), chafon_inventory([tag(3, antenna=2)])
        time.sleep(0.3)  # the bridge opens the port
        for chunk in (b"\x00\x02", first[:7], first[7:], b"\x30" + second):
            os.write(master, chunk)
            time.sleep(0.02)

        [mqtt_bridge] = [bridge for bridge in bridges if isinstance(bridge, MqttBridge)]
        assert mqtt_bridge.subscribed.wait(30)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        publisher.connect("127.0.0.1", mosquitto)
        publisher.loop_start()
        now = dt.datetime.now(dt.UTC)
        publisher.publish(
            "zebra/R-vip/data", zebra_payload([zebra_tag_event(tag(10), now), zebra_tag_event(tag(11), now)]), qos=1
        ).wait_for_publish(5)
        publisher.publish("zebra/R-vip/data", b'{"type":"SIMPLE"}', qos=1).wait_for_publish(5)
        publisher.loop_stop()
        publisher.disconnect()

        url = f"http://127.0.0.1:{http_port}/push/xovis"
        t0 = int(time.time() * 1000)
        assert post(url, xovis_push(1, 55, t0 - 60_000), device)[0] == 200  # baseline only
        assert post(url, xovis_push(2, 57, t0), device) == (200, {"events": 1, "rejected": []})
        status, body = post(url, b"{not json", device)
        assert status == 400 and "not a Xovis live-data push" in body["rejected"][0]
        assert announce_body(http_port, "/push/xovis", 4 << 20 | 1, device) == 413

        reads = consume(broker, "rfid.reads", 5)
        by_reader = {}
        for record in reads:
            event = json.loads(record.value)
            assert record.key.decode() == event["epc"].upper() and event["mall_id"] == "mall-1"
            by_reader.setdefault(event["reader_id"], []).append(event["epc"][-4:])
        # keyed by tag, so each tag's reads keep their order; different tags may interleave
        assert {reader: sorted(tags) for reader, tags in by_reader.items()} == {
            "R-north": ["0001", "0002", "0003"],
            "R-vip": ["000A", "000B"],
        }

        [tick] = consume(broker, "footfall.ticks", 1)
        assert tick.key == b"C-north" and json.loads(tick.value)["in"] == 2

        letters = {
            (json.loads(r.value)["source"], json.loads(r.value)["reason"]) for r in consume(broker, "deadletters", 4)
        }
        assert ("R-north", "garbage before frame") in letters
        assert ("R-north", "truncated frame at end of input") in letters
        assert any(source == "R-vip" and "not a Zebra tag data event" in reason for source, reason in letters)
        assert any(source == "C-north" and "not a Xovis live-data push" in reason for source, reason in letters)

        assert until(lambda: _latest_health(broker).get("R-north", {}).get("events") == 3)
        health = _latest_health(broker)
        assert health["R-north"]["rejects"] == 2 and health["R-north"]["frames"] >= 4
        assert health["R-vip"]["events"] == 2 and health["R-vip"]["rejects"] == 1
        assert health["C-north"]["frames"] == 3 and health["C-north"]["last_seen"]
    finally:
        for bridge in bridges:
            bridge.close()
        gateway.close()


def _latest_health(bootstrap: str) -> dict[str, dict]:
    return {r.key.decode(): json.loads(r.value) for r in consume(bootstrap, HEALTH_TOPIC, 1, timeout=2)}


def test_an_unknown_protocol_or_a_missing_option_stops_the_gateway_at_start(tmp_path):
    def run(**mall: list) -> None:
        settings = Settings(
            malls=[Mall(id="m", **mall)],
            mqtt=Mqtt(mode="off"),
            gateway=GatewayConfig(spool_path=tmp_path / "spool.db", http_host="127.0.0.1", http_port=0),
        )
        run_gateway(settings, threading.Event())

    with pytest.raises(BridgeConfigError, match="unknown protocol 'sick-lms'"):
        run(people_counters=[Device(id="X", place="p", protocol="sick-lms", address="/x")])
    with pytest.raises(BridgeConfigError, match="needs 'direction' in the config"):
        run(
            car_parks=[
                CarPark(
                    id="P", capacity=10, gates=[Device(id="G", place="P", protocol="plate-recognizer", address="/pr")]
                )
            ]
        )


# --- outage and restart ----------------------------------------------------------------------------


def test_events_spooled_while_the_broker_is_down_arrive_once_and_in_order_when_it_returns(broker, tmp_path):
    kafka = Kafka(mode="external", bootstrap_servers=broker, partitions=2)
    with Gateway(Spool(tmp_path / "spool.db"), kafka, send_timeout=2) as gateway:
        gateway.submit("R-1", Decoded(events=[read("R-1", 0)]))
        assert until(lambda: gateway.delivered == 1)
        broker_down(broker, tmp_path)
        for n in range(1, 201):
            gateway.submit("R-1", Decoded(events=[read("R-1", n)]))
        time.sleep(1)
        assert len(gateway.spool) == 200 and gateway.delivered == 1
        broker_up(broker, tmp_path)
        assert until(lambda: len(gateway.spool) == 0, 25)
    records = consume(broker, "rfid.reads", 201)
    numbers = [int(json.loads(r.value)["epc"][-4:], 16) for r in records]
    # each once, but for the one acknowledged before the outage: it is sent again after the first failure
    assert sorted(numbers) in (list(range(201)), [0, *range(201)])
    for partition in {r.partition for r in records}:  # and in order where order is kept: per tag's partition
        in_partition = [n for n, r in zip(numbers, records, strict=False) if r.partition == partition]
        assert in_partition == sorted(in_partition)


def test_what_the_broker_acknowledged_as_it_stopped_is_sent_again_after_it_restarts(broker, tmp_path):
    """noida-db acknowledges writes while it stops and saves without them (2-4 records in 3 of 5 stops
    under load); the gateway must not take an acknowledgement for delivery across a restart."""
    kafka = Kafka(mode="external", bootstrap_servers=broker, partitions=2)
    submitted, stopping = 0, threading.Event()
    with Gateway(Spool(tmp_path / "spool.db"), kafka, send_timeout=2) as gateway:

        def submit_steadily() -> None:
            nonlocal submitted
            while not stopping.is_set():
                gateway.submit("R-4", Decoded(events=[read("R-4", submitted)]))
                submitted += 1
                time.sleep(0.002)

        submitting = threading.Thread(target=submit_steadily)
        submitting.start()
        try:
            for _ in range(3):
                time.sleep(2)
                broker_down(broker, tmp_path)
                time.sleep(1)
                broker_up(broker, tmp_path)
        finally:
            stopping.set()
            submitting.join()
        assert until(lambda: len(gateway.spool) == 0, 40)
    numbers = {int(json.loads(r.value)["epc"][-4:], 16) for r in consume(broker, "rfid.reads", submitted)}
    assert sorted(set(range(submitted)) - numbers) == []


def test_a_read_reaches_the_broker_while_the_spool_file_waits_to_commit_it(broker, tmp_path):
    kafka = Kafka(mode="external", bootstrap_servers=broker, partitions=2)
    with Gateway(Spool(tmp_path / "spool.db"), kafka) as gateway:
        gateway.submit("R-3", Decoded(events=[read("R-3", 0)]))
        assert until(lambda: len(gateway.spool) == 0)
        held = HeldFile(tmp_path / "spool.db")
        submitting = threading.Thread(target=gateway.submit, args=("R-3", Decoded(events=[read("R-3", 1)])))
        submitting.start()
        try:
            assert len(consume(broker, "rfid.reads", 2, timeout=3)) == 2
            assert submitting.is_alive()  # the device is answered only once the read is on disk
        finally:
            held.release()
        submitting.join(5)
        assert until(lambda: len(gateway.spool) == 0)


GATEWAY_PROCESS = """
import sys, time
from mallstream.devices.gateway import Gateway
from mallstream.devices.normalise import Decoded
from mallstream.devices.spool import Spool
from mallstream.settings import Kafka
from tests.test_gateway import read
gateway = Gateway(Spool(sys.argv[1]), Kafka(mode="external", bootstrap_servers=sys.argv[2])).start()
for n in range(100):
    gateway.submit("R-2", Decoded(events=[read("R-2", n)]))
print("spooled", flush=True)
time.sleep(60)
"""


def test_a_gateway_killed_while_the_broker_is_down_delivers_everything_after_restart(broker, tmp_path):
    kafka = Kafka(mode="external", bootstrap_servers=broker, partitions=2)
    with Gateway(Spool(tmp_path / "spool.db"), kafka) as gateway:  # topics exist, as after a first run
        gateway.submit("R-2", Decoded())
    broker_down(broker, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-c", GATEWAY_PROCESS, str(tmp_path / "spool.db"), broker],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert process.stdout.readline().strip() == "spooled"
    process.send_signal(signal.SIGKILL)
    process.wait()
    broker_up(broker, tmp_path)
    with Gateway(Spool(tmp_path / "spool.db"), kafka) as gateway:
        assert len(gateway.spool) == 100
        assert until(lambda: len(gateway.spool) == 0, 20)
    records = consume(broker, "rfid.reads", 100)
    assert all(r.key == json.loads(r.value)["epc"].encode() for r in records)
    assert sorted(json.loads(r.value)["epc"][-4:] for r in records) == [f"{n:04X}" for n in range(100)]
