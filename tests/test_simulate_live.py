"""`mallstream simulate day` live and `simulate play-raw`, as a user runs them: a real broker, Mosquitto, ptys, HTTP."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from mallstream.simulators.emulators import device_of
from mallstream.streams.records import decode_input
from mallstream.streams.topics import INPUT_TOPICS
from tests.conftest import cli, free_port, write_config
from tests.test_emulators import TIMESTAMPED_COUNTERS, parked, reads_of, totals
from tests.test_gateway import consume

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(90)]

#: An hour of a small weekday in which every device (VIP tags at each reader too) and some tills speak.
DAY = ("simulate", "day", "--duration", "1", "--visitors", "300", "--seed", "3")
#: The field naming the device that sent a record, per input topic.
DEVICE_FIELD = {
    "rfid.reads": "reader_id",
    "footfall.ticks": "counter_id",
    "parking.events": "gate_id",
    "pos.transactions": "workstation_id",
}


def live_config(tmp_path: Path, broker: str, mosquitto: int) -> Path:
    return write_config(
        tmp_path,
        broker,
        mqtt={"mode": "external", "port": mosquitto},
        gateway={"http_host": "127.0.0.1", "http_port": free_port(), "spool_path": str(tmp_path / "spool.db")},
    )


def recorded_per_device(recording: Path) -> Counter[tuple[str, str]]:
    """(topic, device) -> records in a `--record` file."""
    events = [decode_input(line) for line in recording.read_bytes().splitlines()]
    return Counter((INPUT_TOPICS[type(event).__struct_config__.tag].name, device_of(event)) for event in events)


def delivered(broker: str, expected: Counter[tuple[str, str]]) -> list:
    """Every record on the input topics, waiting for at least ``expected`` per topic."""
    per_topic = Counter()
    for (topic, _), count in expected.items():
        per_topic[topic] += count
    return [record for topic in DEVICE_FIELD for record in consume(broker, topic, per_topic[topic])]


def per_device(records: Iterable) -> Counter[tuple[str, str]]:
    return Counter((r.topic, json.loads(r.value)[DEVICE_FIELD[r.topic]]) for r in records)


def what_arrived(records: Iterable) -> dict[str, object]:
    """What the hub can tell of a delivery, whenever it was made: serial reads and VS350 ticks carry the
    time they were received, so they are compared without it; everything else whole."""
    by_topic: dict[str, list] = {topic: [] for topic in DEVICE_FIELD}
    for record in records:
        by_topic[record.topic].append(record)
    values = {topic: [json.loads(r.value) for r in found] for topic, found in by_topic.items()}
    ticks = values["footfall.ticks"]
    return {
        "reads": reads_of(values["rfid.reads"]),
        "people": totals(ticks),
        "ticks": Counter(t["counter_id"] for t in ticks),
        "timestamped ticks": Counter(
            (t["counter_id"], t["ts"], t["in"], t["out"]) for t in ticks if t["counter_id"] in TIMESTAMPED_COUNTERS
        ),
        "parking": parked(values["parking.events"]),
        "receipts": Counter((r.key, r.value) for r in by_topic["pos.transactions"]),
    }


def test_a_live_day_delivers_what_a_recording_of_the_same_seed_holds(broker, mosquitto, tmp_path):
    config = live_config(tmp_path, broker, mosquitto)
    cli(config, *DAY, "--record", str(tmp_path / "day.jsonl"))
    expected = recorded_per_device(tmp_path / "day.jsonl")
    assert {device for _, device in expected} >= {"R-north", "R-vip", "R-S101", "C-north", "G-in-1", "G-out-1"}

    result = cli(config, *DAY)
    assert per_device(delivered(broker, expected)) == expected
    assert consume(broker, "deadletters", 0, timeout=2) == []
    table = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert table["R-north"][0] == "serial" and table["C-north"][0] == "http" and table["C-south"][0] == "mqtt"
    for (_, device), count in expected.items():
        _transport, played, _units, _events, rejects = table[device]
        assert (int(played), int(rejects)) == (count, 0), device


def test_play_raw_sends_a_live_day_again_unit_for_unit(broker, mosquitto, tmp_path):
    config = live_config(tmp_path, broker, mosquitto)
    raw = tmp_path / "raw"
    cli(config, *DAY, "--record", str(tmp_path / "day.jsonl"))
    expected = recorded_per_device(tmp_path / "day.jsonl")
    cli(config, *DAY, "--record-raw", str(raw))
    first = delivered(broker, expected)
    assert per_device(first) == expected
    assert (raw / "truth.json").exists()
    assert {path.stem for path in raw.glob("*.jsonl")} >= {device for _, device in expected}
    unit = json.loads((raw / "C-north.jsonl").read_text().splitlines()[0])
    assert (unit["transport"], unit["corrupt"]) == ("http", False) and b"live_data" in base64.b64decode(unit["body"])

    cli(config, "simulate", "play-raw", str(raw))
    seen_first = {(r.topic, r.partition, r.offset) for r in first}
    everything = delivered(broker, expected + expected)
    again = [r for r in everything if (r.topic, r.partition, r.offset) not in seen_first]
    assert len(again) == len(first)
    assert what_arrived(again) == what_arrived(first)
