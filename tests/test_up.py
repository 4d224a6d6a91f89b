"""`mallstream up`: starts the embedded broker, Mosquitto and the worker; SIGINT stops all of them."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from mallstream.services import port_open, wait_for_port
from tests.conftest import cli, free_port, write_config
from tests.support.processes import assert_nothing_left, children

pytestmark = pytest.mark.pipeline


def embedded_config(tmp_path: Path, separate: bool = False) -> tuple[Path, list[int]]:
    """A config of the embedded default (broker, Mosquitto) on free ports; the ports are broker, MQTT, web, VIP web."""
    broker_port, mqtt_port, vip_port = free_port(), free_port(), free_port()
    config = write_config(tmp_path, f"127.0.0.1:{broker_port}")
    data = yaml.safe_load(config.read_text())
    data["kafka"].update(mode="embedded", data_dir=str(tmp_path / "broker"))
    data["mqtt"].update(mode="embedded", port=mqtt_port)
    data["worker"]["vip_worker"].update(separate=separate, web_port=vip_port)
    config.write_text(yaml.safe_dump(data))
    return config, [broker_port, mqtt_port, data["worker"]["web_port"], vip_port]


def start_up(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mallstream.cli", "-c", str(config), "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=config.parent,
    )


@pytest.mark.parametrize("separate", [False, True], ids=["one-worker", "separate-vip-worker"])
def test_up_runs_the_hub_on_embedded_parts_and_stops_them_cleanly(tmp_path, separate):
    config, (broker_port, mqtt_port, web_port, vip_port) = embedded_config(tmp_path, separate)
    up = start_up(config, "--demo")
    try:
        deadline = time.monotonic() + 90
        started, login = up.stdout.readline(), up.stdout.readline()
        assert started.startswith("mallstream up:"), started
        # the demo says how to log in to the board: anonymous access stays refused
        assert f"log in to http://127.0.0.1:{web_port}/board/ as user 'local' with password msk_" in login
        key = re.search(r"password (msk_\S+)", login)[1]
        while not port_open("127.0.0.1", web_port) and time.monotonic() < deadline:
            assert up.poll() is None, up.stdout.read()
            time.sleep(0.2)
        assert port_open("127.0.0.1", broker_port) and port_open("127.0.0.1", mqtt_port)
        board = f"http://127.0.0.1:{web_port}/board/"
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(board, timeout=10)
        login_as_local = {"Authorization": "Basic " + base64.b64encode(f"local:{key}".encode()).decode()}
        assert urllib.request.urlopen(urllib.request.Request(board, headers=login_as_local), timeout=10).status == 200
        rows = 0
        while rows == 0 and time.monotonic() < deadline:  # the demo's simulated tills reach ClickHouse
            time.sleep(1)
            rows = int(cli(config, "sql", "SELECT count() FROM {db}.ledger_entries").stdout.splitlines()[1])
        assert rows > 0
        if separate:  # the VIP worker runs beside the main one, with its own counters
            stats = urllib.request.Request(f"http://127.0.0.1:{vip_port}/stats/", headers=login_as_local)
            with urllib.request.urlopen(stats, timeout=10) as response:
                lanes = json.loads(response.read())["lanes"]
            assert set(lanes) == {"mallstream-vip-routes", "mallstream-vip-presence"}
        time.sleep(6)  # one round of live figures (printed every 5 s)
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "ledger rows in ClickHouse" in output and "VIP alerts" in output  # the live figures
    assert not port_open("127.0.0.1", broker_port) and not port_open("127.0.0.1", mqtt_port)
    assert not port_open("127.0.0.1", web_port) and not port_open("127.0.0.1", vip_port)


@pytest.mark.parametrize("after", [1, 3, 10])
def test_a_sigterm_at_any_moment_of_start_up_stops_every_part_up_started(tmp_path, after):
    # what a service manager does; within the first seconds it used to leave the broker and Mosquitto running
    config, ports = embedded_config(tmp_path)
    up = start_up(config)
    time.sleep(after)
    up.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    output, _ = up.communicate(timeout=90)
    assert time.monotonic() - sent < 45, output
    assert up.returncode in (0, -signal.SIGTERM), output  # killed only if it had not started anything yet
    assert_nothing_left(tmp_path, ports, output)


def test_up_names_a_part_that_died_stops_the_rest_and_exits_non_zero(tmp_path):
    config, ports = embedded_config(tmp_path)
    up = start_up(config)
    try:
        assert wait_for_port("127.0.0.1", ports[2]) or wait_for_port("127.0.0.1", ports[2]), "the worker did not start"
        [worker] = [pid for pid, cmdline in children(up.pid).items() if " worker" in cmdline]
        os.kill(worker, signal.SIGKILL)
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            output, _ = up.communicate(timeout=60)
    assert up.returncode == 1, output
    assert f"the worker (pid {worker}) was killed by SIGKILL" in output, output
    assert "stopped the other parts" in output
    assert_nothing_left(tmp_path, ports, output)
