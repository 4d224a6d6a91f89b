"""Dashboards on a simulated day replayed through a real worker: every panel has rows, panels agree with reports."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mallstream.dashboards.check import panel_results
from mallstream.dashboards.grafana import DASHBOARDS_DIR, PROVISIONING, read_boards
from mallstream.services import wait_for_port
from mallstream.settings import load
from mallstream.simulators import mallday
from mallstream.simulators.members import vip_members
from mallstream.streams.master_data import write_master_data
from mallstream.streams.records import encode
from tests.conftest import NOIDA, WorkerProcess, cli, free_port, write_config

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(120)]

DAY = ("--from", "2026-11-23 00:00", "--to", "2026-11-23 12:30")  # mid-day: some VIPs are still inside


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """A config whose ClickHouse holds a replayed 4-hour weekday with VIP members; the worker is stopped again."""
    tmp = tmp_path_factory.mktemp("dashboards")
    kafka, mqtt = free_port(), free_port()
    subprocess.run([NOIDA, "up", "--only", "kafka", "--kafka-port", str(kafka), "--data-dir", str(tmp / "broker")],
                   check=True, capture_output=True)
    mosquitto = subprocess.Popen(["/usr/sbin/mosquitto", "-p", str(mqtt)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        assert wait_for_port("127.0.0.1", kafka) and wait_for_port("127.0.0.1", mqtt)
        members = tmp / "members.csv"
        config = write_config(tmp, f"127.0.0.1:{kafka}", mqtt={"mode": "external", "port": mqtt},
                              members={"source": str(members)})
        mall = load(config).malls[0]
        day = replace(mallday.scenario("weekday", mall, duration=dt.timedelta(hours=4)), visitors=3000,
                      vip_share=0.03, vip_pool=500)
        write_master_data(members, vip_members(mall, day))
        recording = tmp / "day.jsonl"
        recording.write_bytes(b"".join(encode(event) + b"\n" for event in mallday.simulate(mall, day).events))
        with WorkerProcess(config, tmp / "worker.log"):
            cli(config, "replay", str(recording), "--wait")
        yield config
    finally:
        mosquitto.terminate()
        mosquitto.wait()
        subprocess.run([NOIDA, "down", "--data-dir", str(tmp / "broker")], capture_output=True)


def test_every_panel_of_every_dashboard_runs_and_returns_rows(hub):
    result = cli(hub, "dashboards", "check", *DAY, "--require-data")
    assert "4 dashboards" in result.stdout and "returned rows" in result.stdout


def test_a_broken_query_and_a_schema_error_fail_check_naming_dashboard_and_panel(hub, tmp_path):
    shutil.copytree(PROVISIONING, tmp_path / "provisioning")
    path = tmp_path / "provisioning" / DASHBOARDS_DIR / "mallstream-vip.json"
    board = json.loads(path.read_text())
    board["panels"][0]["targets"][0]["rawSql"] = board["panels"][0]["targets"][0]["rawSql"].replace(
        "alerts", "alerts_missing")
    board["panels"][1]["gridPos"]["w"] = "wide"
    path.write_text(json.dumps(board))
    result = cli(hub, "dashboards", "check", "--provisioning", str(tmp_path / "provisioning"), *DAY, check=False)
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("dashboard")]
    assert len(failures) == 2, result.stderr
    assert failures[0].startswith(f"dashboard 'VIP', panel {board['panels'][1]['title']!r}: TS2322")
    assert failures[1].startswith(f"dashboard 'VIP', panel {board['panels'][0]['title']!r}: query failed")
    assert "alerts_missing" in failures[1]


def test_footfall_panels_show_the_figures_of_the_footfall_report(hub):
    settings = load(hub)
    zone = ZoneInfo(settings.malls[0].timezone)
    start, end = (dt.datetime.fromisoformat(moment).replace(tzinfo=zone) for moment in DAY[1::2])
    footfall = next(board for board in read_boards(PROVISIONING) if board["uid"] == "mallstream-footfall")
    panels = {result.panel: result.rows for result in panel_results(settings, footfall, settings.malls[0].id, start, end)}

    def report(*options: str) -> list[dict]:
        return json.loads(cli(hub, "report", "footfall", *DAY, *options, "--format", "json").stdout)

    quarter = report("--by", "entrance", "--interval", "15m")
    assert [(r["time"], r["place"], r["in"]) for r in panels["People in per entrance, 15 min"]] == \
        [(r["interval_start"], r["place"], r["in"]) for r in quarter]
    assert [(r["place"], r["out"]) for r in panels["People out per entrance, 15 min"]] == \
        [(r["place"], r["out"]) for r in quarter]
    daily = report("--by", "entrance", "--interval", "1d")
    assert panels["In"] == [{"In": sum(r["in"] for r in daily)}] and panels["In"][0]["In"] > 1000
    assert panels["Out"] == [{"Out": sum(r["out"] for r in daily)}]
    hourly: defaultdict[str, int] = defaultdict(int)
    for row in report("--by", "entrance"):
        hourly[row["interval_start"]] += row["in"]
    assert {r["time"]: r["today"] for r in panels["People in per hour: today against the same weekday last week"]} \
        == dict(hourly)
    stores = report("--by", "store", "--interval", "1d")
    assert panels["Store visitors"] == [{"store": r["place"], "visitors": r["in"]} for r in stores]


def test_preview_draws_one_png_per_dashboard(hub, tmp_path):
    cli(hub, "dashboards", "preview", "--out", str(tmp_path), "--from", "2026-11-23 00:00", "--to", "2026-11-23 14:30")
    drawn = sorted(path.name for path in tmp_path.glob("*.png"))
    assert drawn == sorted(f"{board['uid']}.png" for board in read_boards(PROVISIONING))
    assert all((tmp_path / name).stat().st_size > 40_000 for name in drawn)
