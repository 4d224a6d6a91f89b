"""VIP reads from emulated readers to alerts on MQTT and on the board, every real part between.

The Chafon reader at the north gate speaks serial frames down a pseudo-terminal, the Zebra
reader in the VIP lounge JSON over Mosquitto; an in-process gateway takes both to the
broker, a worker process decides the alerts and publishes them, and its board page, open in
headless Chromium, shows them as they come. The tier rules let the VIP tier's alerts carry
the member's name and keep it out of the platinum tier's.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from mallstream.streams.records import RfidRead
from tests.conftest import WorkerProcess, free_port
from tests.test_board import MEMBERS, board_hub, logged_in_page, wait_for
from tests.test_device_pipeline import gateway_with_devices
from tests.test_vip_pipeline import AlertScreen

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(120)]

#: Quick presence, so a walk from the door to the lounge and out takes seconds.
QUICK_PRESENCE = {"dedup_window_s": 0.5, "min_dwell_s": 1.0, "absence_timeout_s": 4.0, "exit_timeout_s": 2.0}
TIERS = {"vip": {"include_name": True}, "platinum": {"severity": "warning"}}


def read(reader_id: str, epc: str) -> RfidRead:
    # the serial reader has no clock (the gateway stamps its reads); the Zebra sends this time
    return RfidRead(reader_id=reader_id, antenna=1, epc=epc, rssi_dbm=-50.0, ts=dt.datetime.now(dt.UTC))


def test_serial_and_mqtt_reader_reads_become_alerts_on_mqtt_and_on_the_board_with_names_only_where_allowed(
    broker, mosquitto, tmp_path, browser
):
    config, settings = board_hub(
        tmp_path,
        broker,
        mosquitto,
        vip={"tiers": TIERS, "presence": QUICK_PRESENCE},
        worker={"vip_tick_seconds": 0.3},
        gateway={"http_host": "127.0.0.1", "http_port": free_port(), "spool_path": str(tmp_path / "spool.sqlite3")},
    )
    (alice, alice_card), (bo, bo_card) = MEMBERS
    screen = AlertScreen(mosquitto, settings.alerts.mqtt_prefix)
    try:
        assert screen.subscribed.wait(30)
        with WorkerProcess(config, tmp_path / "worker.log") as worker, gateway_with_devices(settings) as emulators:
            page = logged_in_page(browser, worker, viewport={"width": 900, "height": 520})
            page.goto(f"http://127.0.0.1:{worker.port}/board/")
            page.wait_for_selector("#status[data-state=live]")

            emulators.play([read("R-north", alice_card), read("R-north", bo_card)])  # both at the north gate
            time.sleep(1.5)
            for _ in range(3):  # Alice walks on to the VIP lounge and stays a moment
                emulators.play([read("R-vip", alice_card)])
                time.sleep(0.3)

            def alerts() -> dict[tuple[str, str], dict]:
                return {(m["member_id"], m["kind"]): m for m in screen.received if m.get("type") == "alert"}

            expected = {
                (alice.member_id, "vip_arrival"),
                (bo.member_id, "vip_arrival"),
                (alice.member_id, "vip_leaving"),
                (bo.member_id, "vip_leaving"),
            }
            on_mqtt = wait_for(
                lambda: alerts() if set(alerts()) >= expected else None,
                timeout=40,
                what="arrivals and leavings on MQTT",
            )
            cards = page.locator("#alerts > li")
            wait_for(lambda: cards.count() == 4, what="four cards on the board")
            page.screenshot(path=str(tmp_path / "board.png"))
            on_board = {
                (card.get_attribute("data-kind"), card.get_attribute("data-zone"), card.locator(".who").inner_text())
                for card in cards.all()
            }

    finally:
        screen.close()

    assert set(on_mqtt) == expected
    assert on_mqtt[(alice.member_id, "vip_arrival")]["zone_id"] == "E-north"  # from the serial reader
    assert on_mqtt[(alice.member_id, "vip_leaving")]["zone_id"] == "Z-vip"  # last seen by the MQTT reader
    assert on_mqtt[(bo.member_id, "vip_leaving")]["zone_id"] == "E-north"
    # privacy: the VIP tier's rule says include_name, the platinum tier's does not
    assert {m["name"] for key, m in on_mqtt.items() if key[0] == alice.member_id} == {alice.name}
    assert all(
        m.get("name") is None and bo.name not in m["message"] for key, m in on_mqtt.items() if key[0] == bo.member_id
    )
    assert on_board == {
        ("vip_arrival", "E-north", alice.name),
        ("vip_arrival", "E-north", bo.member_id),
        ("vip_leaving", "Z-vip", alice.name),
        ("vip_leaving", "E-north", bo.member_id),
    }
