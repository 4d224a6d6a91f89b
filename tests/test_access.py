"""Access control on a real worker and a real gateway: every endpoint refuses no key, a wrong key and a wrong role.

Keys are made with the real key store in the hub's keys file before the worker starts; a key made
or revoked while it runs counts at once. Bodies that are too large or malformed are refused with a
clear error, and a billion-laughs XML pushed by a gate camera or imported as POSLog is refused and
dead-lettered.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from pathlib import Path

import pytest
import yaml

from mallstream.auth import ROLES, KeyStore
from mallstream.devices.bridges import HttpPushBridge, start_bridges
from mallstream.devices.gateway import Gateway
from mallstream.devices.spool import Spool
from mallstream.settings import CarPark, Device, Kafka, Mall, Mqtt, Settings
from mallstream.streams.core.vip import Member
from mallstream.streams.master_data import write_master_data
from mallstream.streams.topics import ensure_topics
from tests.conftest import WorkerProcess, cli, write_config
from tests.test_devices_anpr_poslog import BILLION_LAUGHS, hikvision
from tests.test_gateway import consume, until

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(180)]

CARD, OTHER_CARD = "E2801160000000000000A001", "E2801160000000000000A002"
MEMBERS = [(Member("M000001", "vip", "Alice Wang"), CARD), (Member("M000002", "vip", "Bo Chen"), OTHER_CARD)]

#: (method, path, body, roles that may) for every endpoint of the worker
WORKER_ENDPOINTS = [
    ("GET", "/member/M000001/", None, {"call_centre", "supervisor", "admin"}),
    ("POST", "/sql/", b'{"query": "SELECT 1"}', {"analyst", "admin"}),
    ("GET", "/stats/", None, {"analyst", "supervisor", "admin"}),
    ("POST", "/authorise/?member_id=M000001&txn_id=t-1&amount_cents=1", b"", {"till", "admin"}),
    (
        "POST",
        "/operations/?member_id=M000001&op_id=op-1&action=adjust&by=clerk-7&why=test&points=5",
        b"",
        {"supervisor", "admin"},
    ),
    ("POST", "/schedule/?at=2026-12-31T00:00:00%2B08:00", b"", {"supervisor", "admin"}),
    ("GET", "/board/", None, {"counter_staff", "supervisor", "admin"}),
    ("GET", "/board/places", None, {"counter_staff", "supervisor", "admin"}),
    ("GET", "/board/events", None, {"counter_staff", "supervisor", "admin"}),
    ("GET", "/board/static/board.js", None, {"counter_staff", "supervisor", "admin"}),
    ("POST", "/alerts/no-such-alert/ack", b'{"staff_id": "S-17"}', {"counter_staff", "supervisor", "admin"}),
    # faust's own pages (table contents, routing) are for admins only
    ("GET", "/table/cards/M000001/", None, {"admin"}),
    ("GET", "/router/", None, {"admin"}),
]


def call(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(user: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


@pytest.fixture
def secured(tmp_path: Path, broker: str):
    """A worker whose keys file holds one key per role, a counter-staff key for one door, and a revoked key."""
    members = tmp_path / "members.csv"
    write_master_data(members, MEMBERS)
    config = write_config(tmp_path, broker, members={"source": str(members)})
    store = KeyStore(Path(yaml.safe_load(config.read_text())["auth"]["keys_file"]))
    keys = {role: store.create(f"{role}-1", role)[1] for role in ROLES}
    keys["door"] = store.create("door-staff", "counter_staff", ["E-north"])[1]
    keys["revoked"] = store.create("left-the-company", "supervisor")[1]
    store.revoke("left-the-company")
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        yield worker, store, keys


def test_every_worker_endpoint_refuses_no_key_a_wrong_key_and_a_wrong_role(secured):
    worker, _, keys = secured
    expected_401 = expected_403 = 0
    for method, path, body, allowed in WORKER_ENDPOINTS:
        status, headers, answer = call(worker.port, method, path, body)
        assert status == 401 and "credentials required" in json.loads(answer)["error"], (path, status)
        assert headers["WWW-Authenticate"].startswith("Basic")  # a browser asks for the key
        for wrong in (bearer("msk_not-a-key"), bearer(keys["revoked"]), basic("x", "wrong"), {"X-Api-Key": "wrong"}):
            status, _, answer = call(worker.port, method, path, body, wrong)
            assert status == 401 and "unknown or revoked" in json.loads(answer)["error"], (path, wrong)
        expected_401 += 5
        for role in ROLES:
            status, _, answer = call(worker.port, method, path, body, bearer(keys[role]))
            if role in allowed:
                assert status not in (401, 403), (path, role, answer)
            else:
                reason = json.loads(answer)["error"]  # a kiosk is told to show the member's card
                assert status == 403 and (f"role {role} may not" in reason or "?card=" in reason), (path, role, status)
                expected_403 += 1
    status, _, answer = call(worker.port, "GET", "/stats/", headers=bearer(keys["admin"]))
    counters = json.loads(answer)["counters"]
    assert (counters["auth_refused_401"], counters["auth_refused_403"]) == (expected_401, expected_403)


def test_keys_are_taken_as_bearer_basic_auth_or_header_and_revoking_one_counts_at_once(secured):
    worker, store, keys = secured
    for headers in (bearer(keys["analyst"]), basic("analyst-1", keys["analyst"]), {"X-Api-Key": keys["analyst"]}):
        assert call(worker.port, "GET", "/stats/", headers=headers)[0] == 200
    _, fresh = store.create("new-analyst", "analyst")  # made while the worker runs
    assert call(worker.port, "GET", "/stats/", headers=bearer(fresh))[0] == 200
    store.revoke("new-analyst")
    assert call(worker.port, "GET", "/stats/", headers=bearer(fresh))[0] == 401
    log = worker.log.read_text()
    assert not any(key in log for key in [*keys.values(), fresh])  # refusals are logged, keys never


def test_a_kiosk_reads_only_the_member_whose_card_it_is_shown(secured):
    worker, _, keys = secured
    kiosk = bearer(keys["kiosk"])
    own = call(worker.port, "GET", f"/member/M000001/?card={CARD.lower()}", headers=kiosk)
    assert own[0] not in (401, 403)
    for path in ("/member/M000001/", f"/member/M000001/?card={OTHER_CARD}", "/member/M000001/?card=FFFF"):
        status, _, answer = call(worker.port, "GET", path, headers=kiosk)
        assert status == 403 and "?card=" in json.loads(answer)["error"], path
    assert call(worker.port, "GET", "/member/M000002/", headers=bearer(keys["call_centre"]))[0] not in (401, 403)


def test_counter_staff_see_only_their_own_places_on_the_board(secured):
    worker, _, keys = secured
    _, _, mine = call(worker.port, "GET", "/board/places", headers=bearer(keys["door"]))
    assert [place["id"] for place in json.loads(mine)["places"]] == ["E-north"]
    _, _, everything = call(worker.port, "GET", "/board/places", headers=bearer(keys["supervisor"]))
    assert {place["id"] for place in json.loads(everything)["places"]} == {"E-north", "Z-vip", "S101"}


def test_bad_bodies_and_paths_get_a_clear_error_and_the_worker_goes_on(secured):
    worker, _, keys = secured
    analyst = {**bearer(keys["analyst"]), "Content-Type": "application/json"}
    status, _, answer = call(worker.port, "POST", "/sql/", b'{"query": "SELECT', analyst)
    assert status == 400 and "the body must be JSON" in json.loads(answer)["error"]
    status, _, answer = call(worker.port, "POST", "/sql/", b'["SELECT 1"]', analyst)
    assert status == 400
    status, _, answer = call(worker.port, "POST", "/sql/", b"x" * (1024 * 1024 + 1), analyst)
    assert status == 413 and "over 1048576 bytes" in json.loads(answer)["error"]
    # read-only: no file of the worker's machine is read through the engine, nothing is written
    for query in (
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "DROP TABLE {db}.ledger_entries",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    ):
        status, _, answer = call(worker.port, "POST", "/sql/", json.dumps({"query": query}).encode(), analyst)
        assert status == 400 and "readonly" in json.loads(answer)["error"].lower(), query
    staff = {**bearer(keys["counter_staff"]), "Content-Type": "application/json"}
    status, _, answer = call(worker.port, "POST", "/alerts/a-1/ack", b"{staff_id: S-17", staff)
    assert status == 400 and "JSON" in json.loads(answer)["error"]
    # the board's files, and nothing beside them
    for path in ("/board/static/../web.py", "/board/static/%2e%2e/web.py", "/board/static/..%2fweb.py"):
        status, _, answer = call(worker.port, "GET", path, headers=bearer(keys["admin"]))
        assert status in (403, 404) and b"register_views" not in answer, path
    assert call(worker.port, "POST", "/sql/", b'{"query": "SELECT 1"}', analyst)[0] == 200
    members = cli(worker.config, "sql", "SELECT count() FROM {db}.ledger_entries")  # the command's local key
    assert members.stdout.splitlines()[0] == "count()"


# --- the gateway's push endpoints -------------------------------------------------------------------


def gateway_settings(bootstrap: str) -> Settings:
    counter = Device(
        id="C-north",
        place="E-north",
        protocol="xovis",
        address="/push/xovis",
        routes={"80:1F:12:AA:BB:CC/1008001": "in"},
    )
    gate = Device(id="G-in-1", place="P-B2", protocol="hikvision-isapi", address="/push/anpr", direction="entry")
    return Settings(
        malls=[Mall(id="mall-1", people_counters=[counter], car_parks=[CarPark(id="P-B2", capacity=10, gates=[gate])])],
        kafka=Kafka(mode="external", bootstrap_servers=bootstrap, partitions=2),
        mqtt=Mqtt(mode="off"),
    )


@pytest.fixture
def gateway(tmp_path: Path, broker: str):
    settings = gateway_settings(broker)
    store = KeyStore(tmp_path / "auth" / "keys.json")
    keys = {role: store.create(f"{role}-1", role)[1] for role in ("device", "supervisor", "admin")}
    hub = Gateway(Spool(tmp_path / "spool.db"), settings.kafka, health_interval=0.5).start()
    [bridge] = start_bridges(settings, hub, http_address=("127.0.0.1", 0), keys=store)
    assert isinstance(bridge, HttpPushBridge)
    yield bridge, hub, keys
    bridge.close()
    hub.close()


def test_device_push_endpoints_refuse_no_key_a_wrong_key_and_a_wrong_role(gateway, broker):
    bridge, hub, keys = gateway
    alert = hikvision()
    xml = {"Content-Type": "application/xml"}
    for path in ("/push/xovis", "/push/anpr"):
        status, headers, _ = call(bridge.port, "POST", path, alert, xml)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert call(bridge.port, "POST", path, alert, {**xml, **basic("G-in-1", "wrong")})[0] == 401
        assert call(bridge.port, "POST", path, alert, {**xml, "X-Api-Key": "wrong"})[0] == 401
        status, _, answer = call(bridge.port, "POST", path, alert, {**xml, **bearer(keys["supervisor"])})
        assert status == 403 and "role supervisor may not" in json.loads(answer)["error"]
    assert (bridge.refused["auth_refused_401"], bridge.refused["auth_refused_403"]) == (6, 2)
    health = hub.health()
    assert health["G-in-1"].errors == 4 and "push refused (403)" in health["G-in-1"].last_error
    # what real devices send: basic auth (a camera's user and password), the shared-secret header, a bearer token
    for n, headers in enumerate(
        (basic("G-in-1", keys["device"]), {"X-Api-Key": keys["device"]}, bearer(keys["admin"]))
    ):
        status, _, answer = call(bridge.port, "POST", "/push/anpr", hikvision(plate=f"CAR{n}"), {**xml, **headers})
        assert (status, json.loads(answer)["events"]) == (200, 1)
    assert sorted(json.loads(r.value)["plate"] for r in consume(broker, "parking.events", 3)) == [
        "CAR0",
        "CAR1",
        "CAR2",
    ]
    assert call(bridge.port, "POST", "/push/nowhere", alert, {**xml, **bearer(keys["device"])})[0] == 404


def test_a_billion_laughs_pushed_by_a_gate_camera_is_refused_and_dead_lettered(gateway, broker):
    bridge, hub, keys = gateway
    status, _, answer = call(
        bridge.port,
        "POST",
        "/push/anpr",
        BILLION_LAUGHS,
        {"Content-Type": "application/xml", "X-Api-Key": keys["device"]},
    )
    reason = json.loads(answer)["rejected"][0]
    assert status == 400 and "unsafe XML" in reason and "EntitiesForbidden" in reason
    [letter] = consume(broker, "deadletters", 1)
    assert json.loads(letter.value)["source"] == "G-in-1" and "EntitiesForbidden" in json.loads(letter.value)["reason"]
    assert until(lambda: hub.health()["G-in-1"].rejects == 1)
    status, _, _ = call(
        bridge.port, "POST", "/push/anpr", hikvision(), {"Content-Type": "application/xml", "X-Api-Key": keys["device"]}
    )
    assert status == 200  # and the gateway goes on


def test_a_billion_laughs_poslog_file_is_refused_and_dead_lettered(tmp_path, broker):
    config = write_config(tmp_path, broker)
    ensure_topics(broker, 4, 1, "mallstream")  # as a running worker would have
    attack = tmp_path / "poslog.xml"
    attack.write_bytes(BILLION_LAUGHS.replace(b"EventNotificationAlert", b"POSLog"))
    result = cli(config, "import-poslog", str(attack))
    assert "published 0 receipts, 1 transactions to dead letters" in result.stdout
    [letter] = consume(broker, "deadletters", 1)
    body = json.loads(letter.value)
    assert body["source"] == f"poslog:{attack.resolve()}" and "EntitiesForbidden" in body["reason"]


def test_the_command_quotes_a_member_id_so_it_cannot_reach_another_endpoint(secured):
    worker, _, _ = secured
    result = cli(worker.config, "member", "../stats", check=False)
    assert result.returncode == 1 and "counters" not in result.stdout + result.stderr
    assert urllib.parse.quote("../stats", safe="") == "..%2Fstats"


def test_the_command_takes_its_key_from_the_environment_and_says_what_to_do_without_one(secured, monkeypatch):
    worker, _, keys = secured
    monkeypatch.setenv("MALLSTREAM_API_KEY", keys["analyst"])
    assert cli(worker.config, "sql", "SELECT 1 AS one").stdout.splitlines() == ["one", "1"]
    refused = cli(worker.config, "member", "M000001", check=False)  # an analyst may not read members
    assert refused.returncode == 1 and "role analyst may not" in refused.stderr
    monkeypatch.setenv("MALLSTREAM_API_KEY", "msk_wrong")
    refused = cli(worker.config, "sql", "SELECT 1", check=False)
    assert refused.returncode == 1 and "unknown or revoked API key" in refused.stderr
    assert "set $MALLSTREAM_API_KEY" in refused.stderr
