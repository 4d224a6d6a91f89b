"""VIP alert latency under load: from the gateway receiving a card read to the alert arriving on MQTT.

VIPs walk in at the north gate one after another; their cards are read by the Chafon reader,
emulated on a pseudo-terminal, so the gateway stamps each read when it receives it, and the
alert carries that time as ``ts``. Meanwhile ~5,000 other events/s (reads of tags no member
carries, people-counter ticks) go through the same gateway, broker and worker. Starts a
fresh broker and Mosquitto of its own (a broker with history would have the new worker read
it all first), a worker process and an in-process gateway::

    python -m benchmarks.bench_vip_latency

Each alert also carries when the worker published it, so the latency splits into: gateway to
publish (spool, broker, the route and track agents, which publish on MQTT as they decide)
and publish to receipt (Mosquitto). Its ``decided_at`` is no wall-clock stamp: it is the
worker's event clock, which trails the wall clock by the slowest input partition's lag.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import multiprocessing
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml

from mallstream.auth import KeyStore
from mallstream.devices.normalise import Decoded
from mallstream.services import embedded_services, wait_for_port
from mallstream.settings import load
from mallstream.simulators.emulators import DeviceEmulators
from mallstream.simulators.live import LiveGateway
from mallstream.streams.core.vip import Member
from mallstream.streams.master_data import write_master_data
from mallstream.streams.records import FootfallTick, RfidRead

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "mall.example.yaml"
#: Background events per gateway submit: a busy reader or counter hands over a batch at a time.
BACKGROUND_BATCH = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scratch_config(directory: Path, members: Path, separate: bool = False) -> Path:
    """The example mall with this run's own broker, Mosquitto, members and state, on free ports.

    ``separate``: the VIP agents in a worker of their own (``worker.vip_worker.separate``).
    """
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["kafka"].update(bootstrap_servers=f"127.0.0.1:{_free_port()}", data_dir=str(directory / "broker"))
    data["mqtt"].update(port=_free_port())
    data["clickhouse"].update(path=str(directory / "clickhouse"), http_port=_free_port())
    data.setdefault("auth", {}).update(keys_file=str(directory / "auth" / "keys.json"))
    data["members"]["source"] = str(members)
    data["rules"]["file"] = str(EXAMPLE_CONFIG.parent / "rules.example.yaml")
    data["customers"]["params_file"] = str(directory / "bgnbd.json")
    data["worker"].update(state_dir=str(directory / "worker"), web_port=_free_port())
    data["worker"]["vip_worker"].update(separate=separate, web_port=_free_port())
    data["gateway"].update(http_host="127.0.0.1", http_port=_free_port(), spool_path=str(directory / "spool.sqlite3"))
    path = directory / "mall.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _clock_alerts(port: int, prefix: str, arrivals: Connection, subscribed: EventType) -> None:
    """In a process of its own: send back when each arrival alert was received, by the wall clock."""

    def received(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        at = time.time()
        alert = json.loads(message.payload)
        if alert.get("kind") == "vip_arrival" and not message.retain:
            arrivals.send((at, alert))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda client, *_: client.subscribe(f"{prefix}/+/+", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = received
    client.connect("127.0.0.1", port)
    client.loop_forever()


class AlertClock:
    """Subscribed to every alert, in a process of its own: this one hosts the gateway and the background
    load, and waiting for their interpreter lock would add to the latency measured."""

    def __init__(self, port: int, prefix: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.subscribed = context.Event()
        self._arrivals, sending = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_clock_alerts, args=(port, prefix, sending, self.subscribed), daemon=True
        )
        self._process.start()
        self.arrivals: list[tuple[float, dict]] = []

    def count(self) -> int:
        """Arrival alerts received so far."""
        while self._arrivals.poll():
            self.arrivals.append(self._arrivals.recv())
        return len(self.arrivals)

    def close(self) -> None:
        self.count()
        self._process.terminate()
        self._process.join(10)


def _background(live: LiveGateway, rate: float, stop: threading.Event, sent: list[int]) -> None:
    """Submit ``rate`` events/s to the gateway, half reads of strangers' tags, half counter ticks."""
    mall_id = live.emulators.settings.malls[0].id
    period = BACKGROUND_BATCH / rate
    next_at = time.monotonic()
    n = 0
    while not stop.is_set():
        now = dt.datetime.now(dt.UTC)
        reads = [
            RfidRead(reader_id="R-S101", antenna=1 + i % 4, epc=f"FFFF{(n + i) % 100_000:012X}", rssi_dbm=-60.0, ts=now)
            for i in range(BACKGROUND_BATCH // 2)
        ]
        ticks = [
            FootfallTick(counter_id="C-south", ts=now, count_in=1, interval_s=1)
            for _ in range(BACKGROUND_BATCH - len(reads))
        ]
        live.gateway.submit("R-S101", Decoded(events=reads), mall_id=mall_id)
        live.gateway.submit("C-south", Decoded(events=ticks), mall_id=mall_id)
        n += BACKGROUND_BATCH
        sent[0] = n
        next_at += period
        stop.wait(max(0.0, next_at - time.monotonic()))


def _query_board(config: Path, key: str, every: float, stop: EventType, timings: Connection) -> None:
    """In a process of its own (not the gateway's): the footfall board's queries through the worker's ClickHouse
    endpoint every ``every`` s, as a Grafana on auto-refresh sends them; each query's seconds go to ``timings``."""
    from zoneinfo import ZoneInfo

    from .bench_endpoint import board_queries, endpoint_client

    settings = load(config)
    client = endpoint_client(settings.clickhouse.http_port, key)
    mall = settings.malls[0]
    while not stop.is_set():
        started = time.monotonic()
        now = dt.datetime.now(ZoneInfo(mall.timezone))
        for _, sql in board_queries(mall.id, now.replace(hour=0, minute=0, second=0, microsecond=0), now):
            began = time.perf_counter()
            client.query(sql)
            timings.send(time.perf_counter() - began)
        stop.wait(max(0.0, every - (time.monotonic() - started)))
    timings.close()


def _watch_saves(path: Path, stop: threading.Event, saves: list[float]) -> None:
    """When the embedded broker rewrote its data file (noida-db keeps every record in one JSON file), once a second."""
    last = None
    while not stop.wait(1.0):
        with contextlib.suppress(OSError):
            modified = path.stat().st_mtime
            if last is not None and modified != last:
                saves.append(time.time())
            last = modified


def plot_latency(figures: dict, path: Path) -> None:
    """Each alert's latency over the run, the embedded broker's saves, and the main worker's memory, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    start = figures["timeline"]["started_at"]
    figure, (latency, memory) = plt.subplots(
        2, 1, figsize=(11, 6), sharex=True, layout="constrained", height_ratios=(3, 1)
    )
    reads = [at - start for at, _ in figures["timeline"]["alerts"]]
    latency.scatter(reads, [ms for _, ms in figures["timeline"]["alerts"]], s=4, label="alert")
    for number, at in enumerate(figures["timeline"]["broker_saves"]):
        latency.axvline(at - start, color="tab:red", alpha=0.3, label="broker saved its file" if number == 0 else None)
    latency.axhline(50, color="black", linestyle="--", linewidth=1, label="target p99, 50 ms")
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(ScalarFormatter())
    latency.yaxis.set_minor_formatter(ScalarFormatter())
    latency.set_ylabel("gateway to MQTT, ms")
    latency.set_title(
        f"VIP alert latency, {figures['alerts']} alerts under {figures['background_events_per_s']:,} "
        f"other events/s (p50 {figures['gateway_to_mqtt']['p50_ms']} ms, "
        f"p99 {figures['gateway_to_mqtt']['p99_ms']} ms)"
    )
    latency.legend(loc="upper right")
    memory.plot(
        [at - start for at, _ in figures["timeline"]["rss_mb"]],
        [mb for _, mb in figures["timeline"]["rss_mb"]],
        marker="o",
    )
    memory.set_ylabel("main worker RSS, MiB")
    memory.set_xlabel("seconds into the run")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max in ms; None when nothing arrived (a worker that fell behind)."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.array(values) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def _resident_mb(worker: subprocess.Popen, log: Path) -> float:
    """The worker's resident memory; a worker that has exited ends the run with its log's tail."""
    if worker.poll() is not None:
        raise RuntimeError(f"the worker exited ({worker.returncode}) during the run: {log.read_text()[-3000:]}")
    for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"the worker's memory could not be read: {log.read_text()[-3000:]}")


def _started(worker: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not wait_for_port("127.0.0.1", port):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def bench_vip_latency(
    vips: int = 300,
    every: float = 0.1,
    background_rate: float = 5000.0,
    warmup: float = 5.0,
    separate: bool = True,
    log_path: Path | None = None,
    board_every: float | None = None,
) -> dict:
    """Latency of ``vips`` arrival alerts, one every ``every`` s, under ``background_rate`` other events/s.

    ``board_every``: meanwhile the footfall board's queries run through the worker's ClickHouse endpoint
    every so many seconds, as a floor manager's Grafana refreshing.

    ``separate``: the VIP agents run in a worker of their own, as ``worker.vip_worker.separate`` has them; else
    in the one worker with everything else. The main worker's resident memory is sampled once a minute (a soak
    runs this for ten minutes: it should stay flat). ``log_path``: where the workers' output goes, kept after the
    run (default: the scratch directory, removed with it).
    """
    with tempfile.TemporaryDirectory(prefix="bench-vip-latency-") as scratch:
        directory = Path(scratch)
        members = directory / "members.csv"
        cards = [f"E28011600000{number:012X}" for number in range(1, vips + 1)]
        write_master_data(members, [(Member(f"B{number:06d}", "vip"), card) for number, card in enumerate(cards)])
        config = scratch_config(directory, members, separate)
        settings = load(config)
        log_path = log_path or directory / "worker.log"
        command = [sys.executable, "-m", "mallstream.cli", "-c", str(config), "worker"]
        with embedded_services(settings), log_path.open("wb") as log:
            workers = [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)]
            if separate:
                workers.append(subprocess.Popen([*command, "--vip"], stdout=log, stderr=subprocess.STDOUT))
            worker = workers[0]
            clock = None
            try:
                _started(worker, settings.worker.web_port, log_path)
                if separate:
                    _started(workers[1], settings.worker.vip_worker.web_port, log_path)
                clock = AlertClock(settings.mqtt.port, settings.alerts.mqtt_prefix)
                clock.subscribed.wait(10)
                board_stop, board_timings = multiprocessing.Event(), []
                if board_every:
                    _, key = KeyStore.of(settings).create("bench-board", "analyst")
                    timings, timings_in = multiprocessing.Pipe(duplex=False)
                    board = multiprocessing.Process(
                        target=_query_board, daemon=True, args=(config, key, board_every, board_stop, timings_in)
                    )
                    board.start()
                    timings_in.close()  # the board's process holds the sending end: its exit ends the receiving
                with DeviceEmulators(settings) as emulators, LiveGateway(emulators) as live:
                    stop, sent = threading.Event(), [0]
                    loader = threading.Thread(target=_background, args=(live, background_rate, stop, sent), daemon=True)
                    if background_rate > 0:
                        loader.start()
                    # this process hosts the gateway: frozen out of the collector's sight as `mallstream gateway` is
                    gc.collect()
                    gc.freeze()
                    time.sleep(warmup)  # the worker's consumers settle in under load
                    saves: list[float] = []
                    watcher = threading.Thread(
                        target=_watch_saves, daemon=True, args=(settings.kafka.data_dir / "kafka.json", stop, saves)
                    )
                    watcher.start()
                    started, started_at, sent_before = time.monotonic(), time.time(), sent[0]
                    resident = [(time.time(), _resident_mb(worker, log_path))]
                    for number, card in enumerate(cards, 1):
                        if number % max(1, round(60 / every)) == 0:
                            resident.append((time.time(), _resident_mb(worker, log_path)))
                        emulators.play(
                            [
                                RfidRead(
                                    reader_id="R-north", antenna=1, epc=card, rssi_dbm=-50.0, ts=dt.datetime.now(dt.UTC)
                                )
                            ]
                        )
                        time.sleep(every)
                        clock.count()  # the pipe is drained as it goes: a full one would hold the clock up
                    seconds = time.monotonic() - started
                    resident.append((time.time(), _resident_mb(worker, log_path)))
                    background = (sent[0] - sent_before) / seconds
                    deadline = time.monotonic() + 30
                    while clock.count() < vips and time.monotonic() < deadline:
                        time.sleep(0.1)
                    stop.set()
                    if loader.is_alive():
                        loader.join()
                    if board_every:
                        board_stop.set()
                        with contextlib.suppress(EOFError):
                            while True:
                                board_timings.append(timings.recv())
                        board.join(30)
            finally:
                if clock is not None:
                    clock.close()
                for process in workers:
                    process.terminate()
                for process in workers:
                    process.wait(30)
    arrivals = [alert for _, alert in clock.arrivals]
    read_at = [dt.datetime.fromisoformat(alert["ts"]).timestamp() for alert in arrivals]
    published = [dt.datetime.fromisoformat(alert["published_at"]).timestamp() for alert in arrivals]
    received = [at for at, _ in clock.arrivals]
    latencies = [r - t for r, t in zip(received, read_at, strict=True)]
    return {
        "vip_worker": "separate" if separate else "inline",
        "alerts": len(arrivals),
        "of_reads": vips,
        "background_events_per_s": round(background),
        "gateway_to_mqtt": _percentiles(latencies),
        "gateway_to_publish": _percentiles([p - t for p, t in zip(published, read_at, strict=True)]),
        "publish_to_mqtt": _percentiles([r - p for r, p in zip(received, published, strict=True)]),
        "worker_rss_mb_per_minute": [round(mb) for _, mb in resident],
        "board_queries": {"every_s": board_every, "count": len(board_timings), **_percentiles(board_timings)},
        "timeline": {
            "started_at": started_at,
            "broker_saves": saves,
            "rss_mb": resident,
            "alerts": [(t, round(seconds * 1000, 1)) for t, seconds in zip(read_at, latencies, strict=True)],
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vips", type=int, default=300, help="arrival alerts measured")
    parser.add_argument("--every", type=float, default=0.1, help="seconds between VIP arrivals")
    parser.add_argument("--background", type=float, default=5000.0, help="other events/s through the gateway")
    parser.add_argument("--inline", action="store_true", help="the VIP agents in the one worker (default: their own)")
    parser.add_argument("--log", type=Path, help="keep the workers' output in this file")
    parser.add_argument("--plot", type=Path, help="draw each alert's latency over the run to this PNG")
    parser.add_argument(
        "--board-every",
        type=float,
        help="also run the footfall board's queries through the worker's ClickHouse endpoint every so many seconds",
    )
    arguments = parser.parse_args()
    figures = bench_vip_latency(
        arguments.vips,
        arguments.every,
        arguments.background,
        separate=not arguments.inline,
        log_path=arguments.log,
        board_every=arguments.board_every,
    )
    if arguments.plot:
        plot_latency(figures, arguments.plot)
    print(json.dumps({name: value for name, value in figures.items() if name != "timeline"}, indent=2))
    latency = figures["gateway_to_mqtt"]
    print(
        f"VIP alert latency, gateway receive -> MQTT: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms "
        f"({figures['alerts']} alerts, {figures['background_events_per_s']} other events/s, "
        f"VIP agents {figures['vip_worker']})"
    )
    board = figures["board_queries"]
    if board["count"]:
        print(
            f"footfall board through the ClickHouse endpoint every {board['every_s']:g} s meanwhile: "
            f"{board['count']} queries, p50 {board['p50_ms']} ms, p99 {board['p99_ms']} ms"
        )
    resident = figures["worker_rss_mb_per_minute"]
    print(f"worker RSS, MiB: {resident[0]} after warm-up, {resident[-1]} at the end, peak {max(resident)}")
