"""VIP agents in a real worker: a simulated day replayed through the broker, alerts on Mosquitto.

The reconstructed visits in ClickHouse are checked against the day's ground truth: the
path through the places that have readers, and what the member spent during the visit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal

import paho.mqtt.client as mqtt
import pytest

from mallstream.replay import wait_until_processed
from mallstream.settings import load
from mallstream.simulators import mallday
from mallstream.simulators.members import vip_members
from mallstream.streams.master_data import write_master_data
from mallstream.streams.records import PosTransaction, RfidRead, encode
from tests.conftest import WorkerProcess, cli, free_port, write_config

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(300)]


class AlertScreen:
    """A counter screen: subscribed to every zone's alerts, keeping what it was sent."""

    def __init__(self, port: int, prefix: str) -> None:
        self.received: list[dict] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda client, *_: client.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, message: self.received.append(
            {"topic": message.topic, "retained": message.retain, **json.loads(message.payload)}
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def until_nobody_present(worker: WorkerProcess, timeout: float = 60.0) -> bool:
    """Wait until the worker's VIP agents see nobody in the mall (every visit summarised)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}/stats/", headers=worker.headers)
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=10) as response:
            counters = json.loads(response.read())["counters"]
        if counters.get("vip_present", 1) == 0:
            return True
        time.sleep(0.5)
    return False


def path_at_readers(stops: list[str], reader_places: set[str]) -> list[str]:
    """The places a visit passed that have a reader, a place repeated back to back counted once."""
    path: list[str] = []
    for place in stops:
        if place in reader_places and (not path or path[-1] != place):
            path.append(place)
    return path


@pytest.mark.parametrize("separate", [False, True], ids=["inline", "separate-vip-worker"])
def test_a_replayed_day_gives_vip_paths_and_spend_as_simulated_and_alerts_on_mqtt(
    broker, mosquitto, tmp_path, separate
):
    members = tmp_path / "members.csv"
    config = write_config(
        tmp_path,
        broker,
        mqtt={"mode": "external", "port": mosquitto},
        members={"source": str(members)},
        worker={"vip_tick_seconds": 0.5, "vip_worker": {"separate": separate, "web_port": free_port()}},
    )
    settings = load(config)
    mall = settings.malls[0]
    day = replace(
        mallday.scenario("weekday", mall, duration=dt.timedelta(hours=5)), visitors=3000, vip_share=0.03, vip_pool=500
    )
    write_master_data(members, vip_members(mall, day))
    simulated = mallday.simulate(mall, day)
    recording = tmp_path / "day.jsonl"
    # after the day, a reader sees an unknown tag hours later: event time moves on, the last VIPs leave
    later = max(event.ts for event in simulated.events) + dt.timedelta(hours=3)
    clock_read = RfidRead(reader_id="R-north", antenna=1, epc="FFFF0000", rssi_dbm=-60.0, ts=later)
    recording.write_bytes(b"".join(encode(e) + b"\n" for e in [*simulated.events, clock_read]))

    screen = AlertScreen(mosquitto, settings.alerts.mqtt_prefix)
    try:
        assert screen.subscribed.wait(30)
        with contextlib.ExitStack() as workers:
            # separate: the VIP worker alone runs the VIP agents and counts who is present; the main one the rest
            worker = workers.enter_context(WorkerProcess(config, tmp_path / "worker.log"))
            if separate:
                worker = workers.enter_context(WorkerProcess(config, tmp_path / "vip-worker.log", vip=True))
            cli(config, "replay", str(recording), "--wait")
            assert until_nobody_present(worker), "the VIPs never left"
            assert wait_until_processed(settings, timeout=60, progress=False)
            visits = json.loads(
                "["
                + ",".join(
                    cli(
                        config,
                        "sql",
                        """
                SELECT member_id, visit_id, path_places, spend_cents FROM {db}.vip_visits FINAL ORDER BY arrived""",
                        "--format",
                        "json",
                    ).stdout.splitlines()
                )
                + "]"
            )
            alerts = [
                json.loads(line)
                for line in cli(
                    config,
                    "sql",
                    """
                SELECT kind, member_id, zone_id, visit_id, ts, published_at FROM {db}.alerts ORDER BY ts""",
                    "--format",
                    "json",
                ).stdout.splitlines()
            ]
    finally:
        screen.close()

    reader_places = {reader.place for reader in mall.rfid_readers}
    truth = {
        visit["member_id"]: path_at_readers(
            [visit["entrance"], *(stop["place"] for stop in visit["stops"]), visit["exit"]], reader_places
        )
        for visit in simulated.truth.vip_visits
    }
    seen = {member: path for member, path in truth.items() if path}
    assert len(seen) >= 40
    reconstructed = {visit["member_id"]: visit["path_places"] for visit in visits}
    visits_of: defaultdict[str, list[dict]] = defaultdict(list)
    for visit in visits:
        visits_of[visit["member_id"]].append(visit)
    # a member the readers missed for longer than the absence timeout is two visits: a mismatch
    reconstructed = {member: found[0]["path_places"] for member, found in visits_of.items() if len(found) == 1}
    matching = sum(reconstructed.get(member) == path for member, path in seen.items())
    assert matching >= 0.95 * len(seen), (matching, len(seen))
    assert set(visits_of) <= set(seen)  # nobody the readers did not see, no unknown tag

    spent: defaultdict[str, int] = defaultdict(int)
    for event in simulated.events:
        if isinstance(event, PosTransaction) and event.member_id in seen:
            sign = 1 if event.kind == "sale" else -1
            spent[event.member_id] += sign * int(event.total * Decimal(100))
    assert {member: sum(v["spend_cents"] for v in found) for member, found in visits_of.items()} == {
        member: spent.get(member, 0) for member in visits_of
    }

    arrivals = [alert for alert in alerts if alert["kind"] == "vip_arrival"]
    assert arrivals and all(alert["zone_id"] in {e.id for e in mall.entrances} for alert in arrivals)
    entrances = {e.id for e in mall.entrances}
    # one arrival alert for each visit that began at an entrance, and none for the others
    assert sorted(alert["visit_id"] for alert in arrivals) == sorted(
        visit["visit_id"] for visit in visits if visit["path_places"][0] in entrances
    )
    assert {a["kind"] for a in alerts} >= {"vip_arrival", "vip_at_counter", "vip_leaving"}
    assert all(alert["published_at"] for alert in alerts)

    on_screen = {(m["member_id"], m["kind"], m["zone_id"]) for m in screen.received}
    assert on_screen == {(a["member_id"], a["kind"], a["zone_id"]) for a in alerts}
    assert all(m["topic"] == f"{settings.alerts.mqtt_prefix}/{mall.id}/{m['zone_id']}" for m in screen.received)
    assert all("name" not in m or m["name"] is None for m in screen.received)  # privacy by default
