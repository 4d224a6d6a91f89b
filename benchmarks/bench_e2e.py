"""``mallstream bench --e2e``: the figures that need a broker and a worker process.

(b) events/s one worker takes a simulated mall day (POS, RFID, footfall, parking) through
every agent, table and sink; (e) the wall time of that replay, from the first event sent to
every event stored; (f) the worker's peak RSS; (g) the same recorded day through the naive
faust app of ``benchmarks.bench_naive`` and the ratio; (c) VIP alert latency under load
(``benchmarks.bench_vip_latency``); receipt-to-ledger and till authorisation latency
(``benchmarks.bench_loyalty``). Each part starts a throwaway noida-db broker of its own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mallstream.replay import replay, wait_until_processed
from mallstream.services import embedded_services, wait_for_port
from mallstream.settings import Settings, load
from mallstream.simulators.mallday import MallDay, record
from mallstream.simulators.members import vip_members
from mallstream.streams import topics
from mallstream.streams.master_data import write_master_data
from mallstream.streams.topics import ensure_topics

from . import bench_loyalty
from .bench_vip_latency import bench_vip_latency, scratch_config


@dataclass
class WorkerRun:
    events: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def events_per_cpu_s(self) -> float:
        """Throughput per second of the worker's own CPU: what it would do on a core of its own."""
        return self.events / self.cpu_seconds


#: What the naive app reads (benchmarks/bench_naive.py): the input topics, nothing downstream.
NAIVE_INPUTS = [spec.name for spec in topics.INPUT_TOPICS.values()]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _with(settings: Settings, section: str, **values: object) -> Settings:
    """The settings with some values of one section replaced (settings are frozen)."""
    return settings.model_copy(update={section: getattr(settings, section).model_copy(update=values)})


def start_process(command: list[str], log: Path, settings: Settings) -> subprocess.Popen:
    """Start a worker-like process (output to ``log``) and return once its web port answers."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not wait_for_port("127.0.0.1", settings.worker.web_port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[2]} did not start: {log.read_text()[-2000:]}")
    return process


@contextlib.contextmanager
def throwaway_hub(config: Path, settings: Settings, log: Path) -> Iterator[subprocess.Popen]:
    """The embedded broker and engine of ``settings``, the hub's topics and a worker process; all stopped on exit."""
    with embedded_services(settings):
        ensure_topics(
            settings.kafka.bootstrap_servers,
            settings.kafka.partitions,
            settings.kafka.replication_factor,
            settings.worker.app_id,
        )
        worker = start_process([sys.executable, "-m", "mallstream.cli", "-c", str(config), "worker"], log, settings)
        try:
            yield worker
        finally:
            stop_process(worker)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if it has not stopped within 30 s."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _replay_through(
    command: list[str], settings: Settings, recording: Path, events: int, log: Path, groups: dict[str, list[str]] | None
) -> WorkerRun:
    """Start the worker, replay the recording flat out, and time it until its groups have read everything."""
    process = start_process(command, log, settings)
    try:
        started, cpu_before = time.monotonic(), cpu_seconds(process.pid)
        replay(settings, recording, progress=False)
        if not wait_until_processed(settings, timeout=3600, progress=False, groups=groups):
            raise RuntimeError(f"{command} did not catch up within an hour")
        seconds = time.monotonic() - started
        return WorkerRun(events, seconds, cpu_seconds(process.pid) - cpu_before, peak_rss_mb(process.pid))
    finally:
        stop_process(process)


def recorded_day(directory: Path, visitors: int) -> tuple[Path, Settings, MallDay, Path]:
    """A scratch hub's config in ``directory`` with the day's VIP members, and the day of ``visitors`` recorded there."""
    members = directory / "members.csv"
    config = scratch_config(directory, members)
    settings = load(config)
    mall = settings.malls[0]
    day = MallDay(visitors=visitors, seed=7)
    write_master_data(members, vip_members(mall, day))
    recording = directory / "day.jsonl"
    record(settings, mall.id, day, recording, progress=False)
    return config, settings, day, recording


def bench_day(visitors: int, naive: bool) -> dict[str, WorkerRun]:
    """Replay one simulated day of ``visitors`` through a fresh worker (and, fresh again, the naive app)."""
    runs: dict[str, WorkerRun] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch:
        directory = Path(scratch)
        config, settings, _, recording = recorded_day(directory, visitors)
        events = sum(1 for _ in recording.open("rb"))
        kinds = {"hub": [sys.executable, "-m", "mallstream.cli", "-c", str(config), "worker"]}
        if naive:
            kinds["naive"] = [sys.executable, "-m", "benchmarks.bench_naive", str(config)]
        for kind, command in kinds.items():
            # a broker of its own each time: the replay and the group's lag are this app's alone
            settings = _with(settings, "kafka", data_dir=directory / f"broker-{kind}")
            with embedded_services(settings):
                ensure_topics(
                    settings.kafka.bootstrap_servers,
                    settings.kafka.partitions,
                    settings.kafka.replication_factor,
                    settings.worker.app_id,
                )
                # the hub's own groups by default; the naive app has one, reading the input topics
                groups = None if kind == "hub" else {f"{settings.worker.app_id}-naive": NAIVE_INPUTS}
                runs[kind] = _replay_through(command, settings, recording, events, directory / f"{kind}.log", groups)
    return runs


def run(visitors: int, naive: bool = True, vip_latency: bool = True, loyalty: bool = True) -> list[tuple[str, str]]:
    runs = bench_day(visitors, naive)
    hub = runs["hub"]
    figures = [
        (f"(b) end to end, events/s per worker ({hub.events:,} events)", f"{hub.events_per_s:,.0f}"),
        ("(b) the same per CPU-second of the worker", f"{hub.events_per_cpu_s:,.0f}"),
        (f"(e) replay of a {visitors:,}-visitor day, stored, s", f"{hub.seconds:,.1f}"),
        ("(f) worker peak RSS, MiB", f"{hub.peak_rss_mb:,.0f}"),
    ]
    if naive:
        slow = runs["naive"]
        figures += [
            ("(g) naive faust app, events/s", f"{slow.events_per_s:,.0f}"),
            ("(g) naive faust app, events per CPU-second", f"{slow.events_per_cpu_s:,.0f}"),
            ("(g) worker / naive, per CPU-second", f"{hub.events_per_cpu_s / slow.events_per_cpu_s:,.1f}x"),
        ]
    if vip_latency:
        latency = bench_vip_latency()
        figures += [
            (
                f"(c) VIP alert p50 ms, {latency['background_events_per_s']:,} other events/s",
                f"{latency['gateway_to_mqtt']['p50_ms']}",
            ),
            ("(c) VIP alert p99 ms", f"{latency['gateway_to_mqtt']['p99_ms']}"),
            ("(c) VIP alerts on MQTT by 30 s after the last read", f"{latency['alerts']} of {latency['of_reads']}"),
        ]
    if loyalty:
        figures += bench_loyalty.run()
    return figures
