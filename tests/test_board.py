"""Staff acknowledgements and the live alert board, on a real worker, broker, Mosquitto and Chromium.

An alert is raised the real way (a member's card read at an entrance, replayed into the
broker); staff acknowledge it over HTTP, over MQTT and by clicking on the board page in
headless Chromium, and the reception records in ClickHouse are checked.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from mallstream.auth import KeyStore
from mallstream.replay import replay, wait_until_processed
from mallstream.settings import Settings, load
from mallstream.streams.core.vip import Member
from mallstream.streams.master_data import write_master_data
from mallstream.streams.records import RfidRead, encode
from tests.conftest import WorkerProcess, cli, write_config
from tests.test_vip_pipeline import AlertScreen

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(120)]

MEMBERS = [
    (Member("M000001", "vip", "Alice Wang", ("Lancome",), ("beauty",)), "E2801160000000000000A001"),
    (Member("M000002", "platinum", "Bo Chen", ("Estee Lauder",), ("beauty",)), "E2801160000000000000A002"),
]


def board_hub(tmp_path: Path, broker: str, mosquitto: int, **sections: dict) -> tuple[Path, Settings]:
    members = tmp_path / "members.csv"
    write_master_data(members, MEMBERS)
    config = write_config(
        tmp_path, broker, mqtt={"mode": "external", "port": mosquitto}, members={"source": str(members)}, **sections
    )
    return config, load(config)


def card_read(settings: Settings, tmp_path: Path, epc: str, reader_id: str = "R-north") -> None:
    """A member's card seen now at a reader, sent to the broker as the gateway would."""
    read = RfidRead(
        reader_id=reader_id,
        antenna=1,
        epc=epc,
        rssi_dbm=-50.0,
        ts=dt.datetime.now(dt.UTC),
        mall_id=settings.malls[0].id,
    )
    recording = tmp_path / f"read-{time.monotonic_ns()}.jsonl"
    recording.write_bytes(encode(read) + b"\n")
    replay(settings, recording, progress=False)


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def post_ack(
    worker: WorkerProcess, alert_id: str, body: dict, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    """POST an acknowledgement with ``headers`` (default: the worker's local admin key)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}/alerts/{alert_id}/ack",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(worker.headers if headers is None else headers)},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def logged_in_page(browser, worker: WorkerProcess, **options):
    """A browser page whose staff logged in with a key as the password of basic auth: the browser asks once,
    then sends it along (here: the worker's local admin key)."""
    key = worker.headers["Authorization"].removeprefix("Bearer ")
    return browser.new_page(http_credentials={"username": "local", "password": key}, **options)


def rows(config: Path, query: str) -> list[dict]:
    return [json.loads(line) for line in cli(config, "sql", query, "--format", "json").stdout.splitlines() if line]


def test_acknowledgements_over_http_and_mqtt_are_recorded_once_each_and_summarised_per_day(broker, mosquitto, tmp_path):
    config, settings = board_hub(tmp_path, broker, mosquitto)
    prefix = settings.alerts.mqtt_prefix
    screen = AlertScreen(mosquitto, prefix)
    pda = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pda.connect("127.0.0.1", mosquitto)
    pda.loop_start()
    try:
        assert screen.subscribed.wait(30)
        with WorkerProcess(config, tmp_path / "worker.log") as worker:
            card_read(settings, tmp_path, MEMBERS[0][1])
            [alert] = wait_for(
                lambda: [m for m in screen.received if m.get("type") == "alert"], what="the arrival alert"
            )
            alert_id = alert["alert_id"]

            plain = {"staff_id": "S-17"}
            # counter staff take their own counters' alerts only
            keys = KeyStore(settings.resolve(settings.auth.keys_path()))
            lancome, door = (
                keys.create(name, "counter_staff", [zone])[1]
                for name, zone in (("lancome-counter", "S101"), ("north-door", "E-north"))
            )
            status, refused = post_ack(worker, alert_id, plain, {"Authorization": f"Bearer {lancome}"})
            assert status == 403 and "not one of your counters" in refused["error"]
            assert post_ack(worker, alert_id, plain, {"Authorization": f"Bearer {door}"})[0] == 201
            assert post_ack(worker, alert_id, plain)[0] == 201
            assert post_ack(worker, alert_id, plain)[0] == 201  # a double click: recorded once
            status, record = post_ack(
                worker, alert_id, {"staff_id": "S-18", "note_kind": "complaint", "note": "waited too long for parking"}
            )
            assert status == 201 and (record["zone_id"], record["member_id"]) == ("E-north", "M000001")
            assert post_ack(worker, alert_id, {"staff_id": "S-18", "note_kind": "complaint"})[0] == 400
            assert post_ack(worker, "no-such-alert", plain)[0] == 404
            request = {"alert_id": alert_id, "staff_id": "S-20", "note_kind": "request", "note": "VIP room at 3pm"}
            for _ in range(2):  # a PDA retrying
                pda.publish(f"{prefix}/ack", json.dumps(request), qos=1).wait_for_publish(5)

            wait_for(
                lambda: sum(m.get("type") == "reception_record" for m in screen.received) >= 5,
                what="the boards to be told of every acknowledgement",
            )
            assert wait_until_processed(settings, timeout=60, progress=False)
            records = rows(
                config,
                "SELECT staff_id, channel, note_kind, note, alert_kind, zone_id, member_id "
                "FROM {db}.reception_records ORDER BY staff_id",
            )
            summary = rows(
                config,
                "SELECT business_day, zone_id, alert_kind, note_kind, records "
                "FROM {db}.reception_daily ORDER BY note_kind",
            )
    finally:
        pda.loop_stop()
        screen.close()

    assert [(r["staff_id"], r["channel"], r["note_kind"], r["note"]) for r in records] == [
        ("S-17", "http", "", ""),
        ("S-18", "http", "complaint", "waited too long for parking"),
        ("S-20", "mqtt", "request", "VIP room at 3pm"),
    ]
    assert {(r["alert_kind"], r["zone_id"], r["member_id"]) for r in records} == {("vip_arrival", "E-north", "M000001")}
    today = dt.datetime.now(ZoneInfo(settings.malls[0].timezone)).date().isoformat()  # the mall's business day
    assert [(s["business_day"], s["zone_id"], s["alert_kind"], s["note_kind"], int(s["records"])) for s in summary] == [
        (today, "E-north", "vip_arrival", "", 1),
        (today, "E-north", "vip_arrival", "complaint", 1),
        (today, "E-north", "vip_arrival", "request", 1),
    ]


def test_the_board_shows_an_arrival_as_it_happens_and_an_acknowledge_click_records_it(
    broker, mosquitto, tmp_path, browser
):
    config, settings = board_hub(tmp_path, broker, mosquitto)
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        page = logged_in_page(browser, worker, viewport={"width": 900, "height": 420})
        page.goto(f"http://127.0.0.1:{worker.port}/board/")
        page.wait_for_selector("#status[data-state=live]")
        assert page.locator("#alerts > li").count() == 0

        card_read(settings, tmp_path, MEMBERS[0][1])
        card = page.locator("#alerts > li[data-kind=vip_arrival]")
        card.wait_for(timeout=20_000)
        assert card.locator(".who").inner_text() == "M000001"  # no name: the tier does not allow it
        assert card.locator(".zone").inner_text() == "North gate"
        assert "Lancome" in card.locator(".likes").inner_text()

        page.select_option("#zone", "S101")  # the Lancome counter's screen does not show the door
        assert card.is_hidden()
        page.select_option("#zone", "E-north")
        assert card.is_visible()

        page.fill("#staff", "S-17")
        card.locator("select[name=note_kind]").select_option("suggestion")
        card.locator("input[name=note]").fill("would like a parking voucher")
        card.locator("button").click()
        page.wait_for_selector("#alerts > li.taken")
        assert card.locator(".taken").inner_text().startswith("✓ taken by S-17")
        page.screenshot(path=str(tmp_path / "board.png"))

        assert wait_until_processed(settings, timeout=60, progress=False)
        records = rows(config, "SELECT staff_id, channel, note_kind, note, zone_id FROM {db}.reception_records")
    assert records == [
        {
            "staff_id": "S-17",
            "channel": "http",
            "note_kind": "suggestion",
            "note": "would like a parking voucher",
            "zone_id": "E-north",
        }
    ]
