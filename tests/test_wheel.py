"""The built wheel, installed in a fresh venv: `mallstream init` and `mallstream up --demo` in an empty folder.

The wheel is built from a copy of the source, so no earlier build/ of the checkout can slip stale
files into it. The venv gets the wheel alone (no network here); the dependencies it declares come
from this interpreter's site-packages through a .pth file, which adds their folders to sys.path
without running the checkout's editable-install hook: `mallstream` is the wheel's.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mallstream.services import port_open
from tests.conftest import REPO, free_port
from tests.support.processes import assert_nothing_left, processes_naming

pytestmark = [pytest.mark.pipeline, pytest.mark.wheel, pytest.mark.timeout(300)]

#: What is not source: a copy without them builds what a clean clone builds.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "node_modules", ".state", "__pycache__", ".pytest_cache"
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    build_output: str
    venv: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        """``mallstream ARGS`` of the venv, in ``cwd``, with no config named by the environment."""
        return subprocess.run(
            [self.bin("mallstream"), *args],
            cwd=cwd,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def clean_environment() -> dict[str, str]:
    """This environment without what would point the installed command at the checkout or a config."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MALLSTREAM_") and name not in ("PYTHONPATH", "VIRTUAL_ENV")
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    scratch = tmp_path_factory.mktemp("wheel")
    source, dist, venv = scratch / "source", scratch / "dist", scratch / "venv"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", str(source), "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = dist.glob("mallstream-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (purelib / "project-dependencies.pth").write_text("".join(f"{path}\n" for path in site.getsitepackages()))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Installed(wheel, built.stdout + built.stderr, venv)


def test_the_wheel_builds_without_warnings_and_carries_the_config_board_and_dashboards_not_benchmarks(installed):
    # setuptools' own: a deprecated license table, a data folder absent from `packages`
    assert not [line for line in installed.build_output.splitlines() if "Warning" in line], installed.build_output
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    shipped = {f"mallstream/config/{path.name}" for path in (REPO / "config").glob("*.example.yaml")}
    shipped |= {f"mallstream/streams/board_page/{path.name}" for path in (REPO / "streams" / "board_page").iterdir()}
    provisioning = REPO / "dashboards" / "provisioning"
    shipped |= {
        f"mallstream/dashboards/provisioning/{path.relative_to(provisioning)}"
        for path in provisioning.rglob("*")
        if path.is_file()
    }
    assert len(shipped) > 10 and shipped <= names, sorted(shipped - names)
    assert not [name for name in names if "bench" in name or name.startswith("tests/")]
    metadata = zipfile.ZipFile(installed.wheel).read(f"{installed.wheel.name.split('-py3')[0]}.dist-info/METADATA")
    assert b"\nLicense-Expression: LicenseRef-Proprietary\n" in metadata


def test_the_installed_command_is_the_wheels_and_sends_bench_to_a_checkout(installed, tmp_path):
    where = (
        "import mallstream.cli, mallstream.dashboards.grafana as grafana; "
        "print(mallstream.cli.__file__, len(grafana.read_boards(grafana.PROVISIONING)))"
    )
    found = subprocess.run(
        [installed.bin("python"), "-c", where],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    module, boards = found.stdout.split()
    assert Path(module).is_relative_to(installed.venv)
    assert int(boards) == len(list((REPO / "dashboards" / "provisioning").rglob("*.json")))
    bench = installed.run("bench", cwd=tmp_path)
    assert bench.returncode == 2 and "benchmarks come with a checkout of the source" in bench.stderr, bench.stderr


def test_init_then_up_demo_in_an_empty_folder_serves_the_board_and_stops_on_sigterm(installed, tmp_path):
    mall = tmp_path / "mall"
    mall.mkdir()
    before = installed.run("up", "--demo", cwd=mall)
    assert before.returncode == 2 and "`mallstream init` writes the commented example config" in before.stderr

    init = installed.run("init", cwd=mall)
    assert init.returncode == 0, init.stderr
    config = mall / "config" / "mall.example.yaml"
    for name in ("mall.example.yaml", "rules.example.yaml"):
        assert (mall / "config" / name).read_text() == (REPO / "config" / name).read_text()  # comments included
    again = installed.run("init", cwd=mall)
    assert again.returncode == 1 and "already there" in again.stderr and "--force" in again.stderr
    ports = own_ports(config)

    up = subprocess.Popen(
        [installed.bin("mallstream"), "up", "--demo"],
        cwd=mall,
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started, login = up.stdout.readline(), up.stdout.readline()
        assert started.startswith("mallstream up:"), started + login + up.stdout.read()
        key = re.search(r"password (msk_\S+)", login)[1]
        web_port = ports[-1]
        deadline = time.monotonic() + 120
        while not port_open("127.0.0.1", web_port):
            assert up.poll() is None and time.monotonic() < deadline, up.stdout.read()
            time.sleep(0.2)
        local = {"Authorization": "Basic " + base64.b64encode(f"local:{key}".encode()).decode()}
        board = fetch(f"http://127.0.0.1:{web_port}/board/", local)
        assert "<title>VIP alerts · mallstream</title>" in board.decode()
        script = fetch(f"http://127.0.0.1:{web_port}/board/static/board.js", local)
        assert script == (REPO / "streams" / "board_page" / "board.js").read_bytes()
        # the worker runs the venv's interpreter (its command line names no other folder of the test)
        assert [command for command in processes_naming(installed.venv).values() if " worker --demo" in command]
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=90)
    assert up.returncode == 0, output
    assert (mall / ".state" / "broker").is_dir()  # the example's relative paths are the folder's
    assert_nothing_left(tmp_path, ports, output)  # the broker and Mosquitto, by their state folder
    assert_nothing_left(installed.venv, [], output)  # the worker


def own_ports(config: Path) -> list[int]:
    """The example's fixed ports replaced by free ones, so the test runs beside a hub on them; the worker's last."""
    data = yaml.safe_load(config.read_text())
    broker, mqtt, endpoint, web = (free_port() for _ in range(4))
    data["kafka"]["bootstrap_servers"] = f"127.0.0.1:{broker}"
    data["mqtt"]["port"] = mqtt
    data["clickhouse"]["http_port"] = endpoint
    data["worker"]["web_port"] = web
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    return [broker, mqtt, endpoint, web]


def fetch(url: str, headers: dict[str, str]) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        assert response.status == 200
        return response.read()
