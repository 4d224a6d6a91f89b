"""``mallstream bench --week``: seven simulated mall days back to back through the embedded default.

The broker (noida-db) and one worker as ``mallstream up`` runs them, with ``kafka.keep_hours: 0``
so the retention keeper (streams/retention.py) trims as soon as every group has read a record.
The worker is SIGKILLed on day 5 while it works through the day, and restarted. Printed: the
broker's data size after each day, its RSS and the worker's, the restart's recovery time (restart
to every group caught up), and whether every report over the week equals the days' ground truth.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import yaml

from mallstream.replay import replay, wait_until_processed
from mallstream.services import embedded_services
from mallstream.settings import Settings, load
from mallstream.simulators.mallday import GroundTruth, MallDay, record
from mallstream.simulators.members import vip_members
from mallstream.streams.master_data import write_master_data
from mallstream.streams.retention import broker_data_bytes
from mallstream.streams.topics import ensure_topics

from .bench_e2e import start_process, stop_process
from .bench_vip_latency import scratch_config

MONDAY = dt.date(2026, 11, 23)
#: the day whose replay the worker is SIGKILLed in (1-based)
KILL_DAY = 5


def rss_mb(pid: int) -> float:
    """The process's resident set now (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _broker_pid(settings: Settings) -> int:
    return json.loads((settings.resolve(settings.kafka.data_dir) / "noida.control.json").read_text())["pid"]


def _report(config: Path, *args: str, days: int) -> list[dict]:
    window = ("--from", str(MONDAY), "--to", str(MONDAY + dt.timedelta(days=days)))
    result = subprocess.run(
        [sys.executable, "-m", "mallstream.cli", "-c", str(config), "report", *args, *window, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def check_reports(config: Path, settings: Settings, truths: list[GroundTruth]) -> dict[str, str]:
    """Each report over the week against the days' truth: visitors per entrance and hour, sales, car-park exits."""
    mall = settings.malls[0]
    counted = {counter.place for counter in mall.people_counters}
    entrances = [entrance.id for entrance in mall.entrances if entrance.id in counted]
    days = len(truths)
    hourly = _report(config, "footfall", "--visitors", "--by", "entrance", days=days)
    reported = {(row["place"], row["interval_start"]): (row["in"], row["out"]) for row in hourly if row["total"]}
    true_hours = {
        (place, hour[:19].replace("T", " ")): (flows["in"], flows["out"])
        for truth in truths
        for place in entrances
        for hour, flows in truth.visitors.get(place, {}).items()
        if flows["in"] or flows["out"]
    }
    conversion = _report(config, "conversion", "--interval", "1d", days=days)
    sales = {row["interval_start"][:10]: row["transactions"] for row in conversion if row["level"] == "mall"}
    true_sales = {str(truth.day): sum(figures["sales"] for figures in truth.transactions.values()) for truth in truths}
    parking = _report(config, "parking", days=days)
    exits = Counter(row["interval_start"][:10] for row in parking for _ in range(row["exits"]))
    true_exits = Counter(stay["exit"][:10] for truth in truths for stay in truth.parking_stays)
    return {
        "visitors per entrance and hour": _differences(reported, true_hours),
        "transactions per day": _differences(sales, true_sales),
        "car-park exits per day": _differences(exits, true_exits),
    }


def _differences(reported: Mapping, truth: Mapping) -> str:
    """'yes', or how many keys differ and the first of them."""
    differ = sorted(key for key in reported.keys() | truth.keys() if reported.get(key) != truth.get(key))
    if not differ:
        return "yes"
    return f"NO: {len(differ)} differ, e.g. {differ[0]}: {reported.get(differ[0])} (truth {truth.get(differ[0])})"


def run_week(visitors: int, days: int, keep_hours: float = 0.0) -> list[tuple[str, str]]:
    """Replay ``days`` simulated days of ``visitors`` each; the figures as (name, value) rows."""
    figures: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-week-") as scratch:
        directory = Path(scratch)
        members = directory / "members.csv"
        config = scratch_config(directory, members)
        data = yaml.safe_load(config.read_text())
        data["kafka"].update(keep_hours=keep_hours, trim_every_seconds=5)
        data["mqtt"]["mode"] = "off"
        config.write_text(yaml.safe_dump(data))
        settings = load(config)
        mall = settings.malls[0]
        schedule = [MallDay(visitors=visitors, seed=7 + n, day=MONDAY + dt.timedelta(days=n)) for n in range(days)]
        write_master_data(members, vip_members(mall, schedule[0]))
        command = [sys.executable, "-m", "mallstream.cli", "-c", str(config), "worker"]
        truths = []
        with embedded_services(settings):
            ensure_topics(
                settings.kafka.bootstrap_servers,
                settings.kafka.partitions,
                settings.kafka.replication_factor,
                settings.worker.app_id,
            )
            log = directory / "worker.log"
            worker = start_process(command, log, settings)
            try:
                for number, day in enumerate(schedule, start=1):
                    recording = directory / "day.jsonl"
                    truths.append(record(settings, mall.id, day, recording, progress=False))
                    replay(settings, recording, progress=False)
                    if number == KILL_DAY:
                        worker.kill()
                        worker.wait()
                        restarted = time.monotonic()
                        worker = start_process(command, log, settings)
                        port_s = time.monotonic() - restarted
                    if not wait_until_processed(settings, timeout=3600, progress=False):
                        raise RuntimeError(f"day {number} was not processed within an hour")
                    if number == KILL_DAY:
                        figures.append(("restart on day 5: web port open after, s", f"{port_s:,.1f}"))
                        figures.append(
                            ("restart on day 5: every group caught up after, s", f"{time.monotonic() - restarted:,.1f}")
                        )
                    time.sleep(2 * settings.kafka.trim_every_seconds)  # a keeper round after the day's last commit
                    figures.append(
                        (
                            f"day {number} ({day.day:%a}): broker data MiB / broker RSS MiB / worker RSS MiB",
                            f"{broker_data_bytes(settings) / 2**20:,.1f} / {rss_mb(_broker_pid(settings)):,.0f}"
                            f" / {rss_mb(worker.pid):,.0f}",
                        )
                    )
            finally:
                stop_process(worker)
            checks = check_reports(config, settings, truths)
    figures += [(f"week: {name} equal ground truth", verdict) for name, verdict in checks.items()]
    return figures
