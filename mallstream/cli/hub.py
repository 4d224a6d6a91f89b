"""Running the hub and talking to it: init, up, worker, gateway, replay, import-poslog, sql, member, bench."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType

import click

from ..auth import NO_KEY_HINT
from ..cli_common import pick_mall
from ..settings import Settings
from .base import exit_on_broker_error, main, run_service, settings_of, worker_url


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="overwrite example files already there")
def init(directory: Path, force: bool) -> None:
    """Write the commented example config and rule file into DIRECTORY/config (default: here)."""
    from ..examples import write_examples

    try:
        written = write_examples(directory, force)
    except FileExistsError as exc:
        click.echo(f"mallstream init: {exc}", err=True)
        sys.exit(1)
    for path in written:
        click.echo(f"wrote {path}")
    here = "" if directory.resolve() == Path.cwd() else f"cd {directory} && "
    click.echo(f"try it: {here}mallstream up --demo; then edit the copies (comments say what each key does)")


@main.command()
@click.option("--demo/--no-demo", default=False, help="feed a simulated mall day and print live figures")
@click.pass_context
def up(ctx: click.Context, demo: bool) -> None:
    """Start the embedded parts (broker, Mosquitto) and the workers; Ctrl-C or SIGTERM stops all.

    A part that exits on its own is named with its exit code and last lines, the rest is stopped
    and `up` exits 1.
    """
    import signal

    from ..services import PartExited, Parts, Stopped, embedded_services
    from ..streams.retention import broker_summary

    parts = Parts()  # from here on a signal stops whatever has been started, at any moment
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: parts.stopping.set())
    settings = settings_of(ctx)
    if demo:
        from ..demo import write_demo_members

        write_demo_members(settings)
    worker = [
        sys.executable,
        "-m",
        "mallstream.cli",
        "-c",
        ctx.obj,
        *(["-v"] if ctx.meta["loglevel"] == "info" else []),
        "worker",
        *(["--demo"] if demo else []),
    ]

    def serve() -> None:
        with embedded_services(settings, parts):
            click.echo(
                f"mallstream up: broker {settings.kafka.bootstrap_servers}, ClickHouse "
                f"{settings.clickhouse.mode}, worker http://127.0.0.1:{settings.worker.web_port}/stats/"
            )
            click.echo(_login_help(settings, show_key=demo))
            click.echo(f"mallstream up: {broker_summary(settings)}")
            parts.start("worker", worker, echo=True)
            if settings.worker.vip_worker.separate:
                parts.start("VIP worker", [*worker, "--vip"], echo=True)
            parts.watch()

    try:
        run_service(serve)
    except Stopped:
        pass
    except PartExited as exc:
        click.echo(f"mallstream up: {exc}\nmallstream up: stopped the other parts", err=True)
        sys.exit(1)


def _login_help(settings: Settings, show_key: bool) -> str:
    """How to log in to the board and the API; the demo prints the local admin key itself."""
    from ..auth import KeyStore

    store = KeyStore.of(settings)
    board = f"http://127.0.0.1:{settings.worker.web_port}/board/"
    if not settings.auth.local_key:
        return f"log in to {board} and the API with a key: mallstream keys create --role ... --name ..."
    key = store.ensure_local_key()
    where = store.path.with_name("local.key")
    shown = key if show_key else f"the key in {where}"
    return (
        f"log in to {board} as user 'local' with password {shown} (API: 'Authorization: Bearer <key>'); "
        "keys for staff, tills and devices: mallstream keys create --role ROLE --name NAME"
    )


@main.command()
@click.option("--vip", is_flag=True, help="run only the VIP agents (needs worker.vip_worker.separate: true)")
@click.option(
    "--demo", is_flag=True, hidden=True, help="a worker of `up --demo`: its members; the main one feeds the day"
)
@click.pass_context
def worker(ctx: click.Context, vip: bool, demo: bool) -> None:
    """Run one worker against the configured (already running) broker; start more to scale out."""
    from ..streams.worker import run_worker

    settings, extend = settings_of(ctx), None
    if demo:
        from ..demo import attach_demo, with_demo_members

        settings, extend = with_demo_members(settings), None if vip else attach_demo
    run_service(run_worker, settings, extend=extend, loglevel=ctx.meta["loglevel"], vip=vip)


@main.command()
@click.pass_context
def gateway(ctx: click.Context) -> None:
    """Bridge the configured devices (serial, MQTT, HTTP push) to Kafka, buffering on disk; Ctrl-C stops."""
    import signal
    import threading

    from ..devices.bridges import BridgeConfigError
    from ..devices.gateway import run_gateway

    settings = settings_of(ctx)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    conf = settings.gateway
    click.echo(
        f"mallstream gateway: push endpoints on {conf.http_host}:{conf.http_port} (device keys from "
        f"{settings.auth.keys_path()}), spool {conf.spool_path}"
    )
    try:
        run_gateway(settings, stop)
    except BridgeConfigError as exc:
        click.echo(f"mallstream: bad device config in {settings.source}: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--speed", type=float, default=0.0, help="keep event spacing, this many times faster (0: flat out)")
@click.option("--wait", is_flag=True, help="return only when every event is processed and stored")
@click.option("--timeout", type=float, default=900.0, show_default=True, help="seconds --wait may take")
@click.pass_context
def replay(ctx: click.Context, file: Path, speed: float, wait: bool, timeout: float) -> None:
    """Send a JSON-lines file of events (each with a "type") into the hub."""
    from ..replay import GroupOffsets, wait_until_processed
    from ..replay import replay as send

    settings = settings_of(ctx)
    started = time.monotonic()
    with exit_on_broker_error():
        since = None
        if wait:  # the bar of --wait counts from before the first event is sent
            with GroupOffsets(settings) as offsets:
                since = offsets.read().committed
        report = send(settings, file, speed=speed)
        rate = report.sent / report.seconds if report.seconds else 0.0
        click.echo(f"sent {report.sent} events ({rate:,.0f}/s), {report.dead_letters} malformed lines to dead letters")
        if not wait:
            return
        if not wait_until_processed(settings, timeout=timeout, since=since):
            click.echo(f"mallstream: not all events were processed within {timeout:.0f} s", err=True)
            sys.exit(1)
    elapsed = time.monotonic() - started
    click.echo(f"processed and stored in {elapsed:.1f} s: {report.sent / elapsed:,.0f} events/s end to end")


@main.command("import-poslog")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mall", "mall_id", help="mall the stores belong to (default: the first in the config)")
@click.pass_context
def import_poslog(ctx: click.Context, files: tuple[Path, ...], mall_id: str | None) -> None:
    """Publish ARTS POSLog files as receipts; unreadable transactions go to dead letters."""
    from zoneinfo import ZoneInfo

    from tqdm import tqdm

    from ..devices.pos_producer import PosProducer
    from ..devices.poslog import PosLogState, decode_poslog
    from ..sending import broker_errors, producer_limits
    from ..transports import kafka_options

    settings = settings_of(ctx)
    mall = pick_mall(settings, mall_id)
    state, sent, rejected = PosLogState(), 0, 0
    with (
        exit_on_broker_error(),
        broker_errors(settings.kafka),
        PosProducer(
            settings.kafka.bootstrap_servers, **kafka_options(settings.kafka), **producer_limits(settings.kafka)
        ) as hub,
    ):
        for path in tqdm(files, unit="file", disable=len(files) < 10):
            state, decoded, gaps = decode_poslog(state, path.read_bytes(), ZoneInfo(mall.timezone))
            hub.publish(decoded, source=f"poslog:{path.resolve()}", mall_id=mall.id)
            sent, rejected = sent + len(decoded.events), rejected + len(decoded.rejects)
            for gap in gaps:
                click.echo(f"{path}: {gap.source} sequence numbers {gap.first_missing}..{gap.last_missing} missing")
    click.echo(f"published {sent} receipts, {rejected} transactions to dead letters")


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["tsv", "json"]), default="tsv", show_default=True)
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Run a query on the configured ClickHouse; {db} stands for the hub's database.

    With the embedded engine, a running worker owns it and answers; otherwise the
    engine is opened here.
    """
    from ..querying import QueryError, raw

    try:
        sys.stdout.buffer.write(raw(settings_of(ctx), query, fmt))
    except QueryError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("member_id")
@click.option("--as-of", "as_of", help="a date (end of that day) or local time at or after the member's last event")
@click.pass_context
def member(ctx: click.Context, member_id: str, as_of: str | None) -> None:
    """Everything the running worker knows about a member, as JSON: balances, P(alive), stage, segment, class."""

    from ..auth import command_headers

    settings = settings_of(ctx)
    query = f"?{urllib.parse.urlencode({'as_of': as_of})}" if as_of else ""
    request = urllib.request.Request(
        worker_url(settings, f"/member/{urllib.parse.quote(member_id, safe='')}/{query}"),
        headers=command_headers(settings),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            click.echo(response.read().decode())
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode(), err=True)
        if exc.code == 401:
            click.echo(NO_KEY_HINT, err=True)
        sys.exit(1)
    except urllib.error.URLError:
        click.echo(f"mallstream: no worker answers on port {settings.worker.web_port}; start `mallstream up`", err=True)
        sys.exit(1)


@main.command()
@click.option("--count", type=int, default=200_000, show_default=True, help="receipts / rows per figure")
@click.option("--e2e", is_flag=True, help="also the figures through a broker and worker processes (b, c, e, f, g)")
@click.option("--visitors", type=int, default=100_000, show_default=True, help="--e2e: visitors of the replayed day")
@click.option("--naive/--no-naive", default=True, show_default=True, help="--e2e: the naive faust app for comparison")
@click.option(
    "--history",
    is_flag=True,
    help="only the long histories of `simulate history`, each through its own broker and worker",
)
@click.option(
    "--size",
    type=click.FloatRange(min=0, min_open=True),
    default=0.05,
    show_default=True,
    help="--history: share of the full size",
)
@click.option(
    "--week",
    is_flag=True,
    help="only: --days simulated days of --visitors through the embedded default "
    "with kafka.keep_hours 0, the worker killed on day 5",
)
@click.option("--days", type=int, default=7, show_default=True, help="--week: days replayed")
def bench(count: int, e2e: bool, visitors: int, naive: bool, history: bool, size: float, week: bool, days: int) -> None:
    """Print throughput figures: rule cores and the ClickHouse sink; with --e2e, the worker end to end.

    The benchmarks are in the checkout's benchmarks/ folder, not in the installed package.
    """
    if history:
        for name, figure in _benchmark("bench_history").run(size):
            click.echo(f"{name:<56} {figure:>12}")
        return
    if week:
        for name, figure in _benchmark("bench_week").run_week(visitors, days):
            click.echo(f"{name:<72} {figure:>16}")
        return
    figures = _benchmark("bench").run(count)
    if e2e:
        figures += _benchmark("bench_e2e").run(visitors, naive)
    for name, figure in figures:
        click.echo(f"{name:<56} {figure:>12}")


def _benchmark(name: str) -> ModuleType:
    """``benchmarks.<name>`` from the checkout this package runs from; a one-line error when installed from a wheel."""
    import importlib
    import os

    checkout = Path(__file__).resolve().parents[2]  # mallstream/cli/hub.py -> the checkout
    if not (checkout / "benchmarks" / f"{name}.py").is_file():
        click.echo(
            "mallstream bench: the benchmarks come with a checkout of the source (its benchmarks/ folder), "
            "not with the installed package: pip install -e CHECKOUT, then run it again",
            err=True,
        )
        sys.exit(2)
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
        # for the processes they start themselves (python -m benchmarks.bench_naive)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))
    return importlib.import_module(f"benchmarks.{name}")
