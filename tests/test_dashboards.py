"""Dashboards: no drift from the generator, Grafana's schema via tsc, `push` against a recording HTTP server."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mallstream.dashboards.boards import BOARDS, FOLDER_UID, build_all
from mallstream.dashboards.clickhouse import DATASOURCE_UID, PLUGIN
from mallstream.dashboards.grafana import PROVISIONING, datasource, read_boards, write_provisioning
from mallstream.dashboards.schema import validate
from mallstream.settings import load
from tests.conftest import EXAMPLE_CONFIG, cli, free_port

TOKEN = "glsa_test-token"


def test_checked_in_provisioning_is_what_the_generator_makes_from_the_example_config(tmp_path):
    written = write_provisioning(load(EXAMPLE_CONFIG), build_all(load(EXAMPLE_CONFIG)), tmp_path)
    checked_in = sorted(path for path in PROVISIONING.rglob("*") if path.is_file())
    assert [p.relative_to(tmp_path) for p in written] == [p.relative_to(PROVISIONING) for p in checked_in]
    for new, old in zip(written, checked_in, strict=False):
        assert new.read_text() == old.read_text(), f"{old} drifted: run `mallstream dashboards export`"


def test_generated_boards_are_valid_and_planted_schema_errors_are_named_by_dashboard_and_panel():
    boards = read_boards(PROVISIONING)
    assert [board["uid"] for board in boards] == sorted(board.uid for board in BOARDS)
    assert validate(boards) == []
    broken = copy.deepcopy(boards)
    footfall = next(board for board in broken if board["uid"] == "mallstream-footfall")
    footfall["panels"][0]["gridPoss"] = footfall["panels"][0].pop("gridPos")  # misspelt key
    parking = next(board for board in broken if board["uid"] == "mallstream-parking")
    parking["refresh"] = 10  # a number where the schema has a string
    parking["panels"][1]["options"]["colorMode"] = "rainbow"  # not a stat colour mode
    problems = {(p.dashboard, p.panel): p.message for p in validate(broken)}
    assert set(problems) == {
        ("Live footfall", footfall["panels"][0]["title"]),
        ("Parking", ""),
        ("Parking", parking["panels"][1]["title"]),
    }
    assert "gridPoss" in problems[("Live footfall", footfall["panels"][0]["title"])]
    assert "rainbow" in problems[("Parking", parking["panels"][1]["title"])]


def test_live_boards_refresh_every_10_s_and_every_board_has_the_mall_variable():
    for board in read_boards(PROVISIONING):
        names = [variable["name"] for variable in board["templating"]["list"]]
        assert names[0] == "mall"
        analysts_read = board["uid"] in ("mallstream-loyalty", "mallstream-customers")
        assert board.get("refresh") == (None if analysts_read else "10s")
        for panel in board["panels"]:
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
            assert all(
                target["datasource"]["uid"] == DATASOURCE_UID and target["rawSql"] for target in panel["targets"]
            )
    assert {"mall", "store", "floor", "entrance"} <= {v for b in BOARDS for v in b.variables}


class FakeGrafana(BaseHTTPRequestHandler):
    """Answers like Grafana's HTTP API for folders, datasources by uid and dashboards; records every call."""

    calls: list[tuple[str, str, dict | None]]
    folders: dict[str, dict]
    datasources: dict[str, dict]
    dashboards: dict[str, dict]

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((self.command, self.path, body))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(401, {"message": "invalid API key"})
        route = (self.command, *self.path.strip("/").split("/"))
        match route:
            case ("GET", "api", "folders", uid):
                return (
                    self._answer(200, self.folders[uid])
                    if uid in self.folders
                    else self._answer(404, {"message": "folder not found"})
                )
            case ("POST", "api", "folders"):
                if body["uid"] in self.folders:
                    return self._answer(409, {"message": "a folder with the same uid already exists"})
                self.folders[body["uid"]] = body
                return self._answer(200, {"uid": body["uid"], "title": body["title"]})
            case ("GET", "api", "datasources", "uid", uid):
                return (
                    self._answer(200, self.datasources[uid])
                    if uid in self.datasources
                    else self._answer(404, {"message": "Data source not found"})
                )
            case ("PUT", "api", "datasources", "uid", uid) if uid in self.datasources:
                self.datasources[uid] = body
                return self._answer(200, {"message": "Datasource updated"})
            case ("POST", "api", "datasources"):
                if any(source["name"] == body["name"] for source in self.datasources.values()):
                    return self._answer(409, {"message": "data source with the same name already exists"})
                self.datasources[body["uid"]] = body
                return self._answer(200, {"message": "Datasource added"})
            case ("POST", "api", "dashboards", "db"):
                uid = body["dashboard"]["uid"]
                if uid in self.dashboards and not body.get("overwrite"):
                    return self._answer(412, {"status": "name-exists", "message": "dashboard exists"})
                if body.get("folderUid") not in self.folders:
                    return self._answer(400, {"message": "folder not found"})
                version = self.dashboards.get(uid, {}).get("version", 0) + 1
                self.dashboards[uid] = {"dashboard": body["dashboard"], "version": version}
                return self._answer(200, {"status": "success", "uid": uid, "version": version})
        return self._answer(404, {"message": "Not found"})

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[tuple[str, type[FakeGrafana]]]:
    handler = type("Recorder", (FakeGrafana,), {"calls": [], "folders": {}, "datasources": {}, "dashboards": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_push_creates_folder_datasource_and_dashboards_then_updates_them_in_place(grafana, tmp_path):
    url, recorded = grafana
    config = EXAMPLE_CONFIG
    first = cli(config, "dashboards", "push", "--url", url, "--token", TOKEN)
    boards = read_boards(PROVISIONING)
    assert [(method, path) for method, path, _ in recorded.calls] == [
        ("GET", f"/api/folders/{FOLDER_UID}"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
    ] + [("POST", "/api/dashboards/db")] * len(boards)
    assert recorded.folders[FOLDER_UID]["title"] == "mallstream"
    assert recorded.datasources[DATASOURCE_UID] == datasource(load(config), "")
    assert recorded.datasources[DATASOURCE_UID]["type"] == PLUGIN
    for board in boards:
        stored = recorded.dashboards[board["uid"]]
        assert stored["dashboard"] == {**board, "id": None} and stored["version"] == 1
    assert all(
        body["overwrite"] is True and body["folderUid"] == FOLDER_UID
        for method, path, body in recorded.calls
        if path == "/api/dashboards/db"
    )
    assert "folder mallstream created" in first.stdout

    recorded.calls.clear()
    second = cli(config, "dashboards", "push", "--url", url, "--token", TOKEN)
    assert [(method, path) for method, path, _ in recorded.calls][:3] == [
        ("GET", f"/api/folders/{FOLDER_UID}"),
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
    ]
    assert {uid: stored["version"] for uid, stored in recorded.dashboards.items()} == {b["uid"]: 2 for b in boards}
    assert len(recorded.datasources) == 1 and "datasource mallstream-clickhouse updated" in second.stdout


def test_push_with_a_bad_token_or_to_nowhere_says_so_and_exits_1(grafana):
    url, recorded = grafana
    refused = cli(EXAMPLE_CONFIG, "dashboards", "push", "--url", url, "--token", "wrong", check=False)
    assert refused.returncode == 1 and "refused the token" in refused.stderr and "Traceback" not in refused.stderr
    assert not recorded.folders and not recorded.dashboards
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = cli(EXAMPLE_CONFIG, "dashboards", "push", "--url", nowhere, "--token", TOKEN, check=False)
    assert unreachable.returncode == 1 and f"cannot reach Grafana at {nowhere}" in unreachable.stderr
