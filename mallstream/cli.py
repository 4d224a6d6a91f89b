"""The ``mallstream`` command."""

from __future__ import annotations

import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import click

from .auth import NO_KEY_HINT, ROLES
from .cli_common import LOCAL_TIMES, load_settings, pick_mall
from .customer_reports import CUSTOMER_SPLITS
from .reports import AREA_LEVELS, COMPARISONS, FORMATS, INTERVALS, PERIODS, VISITOR_LEVELS
from .settings import ConfigError, Settings

DEFAULT_CONFIG = "config/mall.example.yaml"


@click.group()
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="MALLSTREAM_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="YAML config file (env MALLSTREAM_CONFIG)",
)
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
@click.pass_context
def main(ctx: click.Context, config_path: str, verbose: bool) -> None:
    """mallstream: POS, RFID, footfall and parking in one stream."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = config_path
    ctx.meta["loglevel"] = "info" if verbose else "warning"


def _settings(ctx: click.Context) -> Settings:
    return load_settings(ctx.obj)


def _run(function, *args, **kwargs) -> None:
    """Start-up problems a user can fix are one line on stderr and exit 2, not a traceback."""
    from .services import ServiceError
    from .streams.framework_patches import FrameworkVersionError
    from .streams.topics import TopicLayoutError

    try:
        function(*args, **kwargs)
    except ConfigError as exc:  # e.g. a loyalty rule file that was never valid
        click.echo(f"mallstream: bad config: {exc}", err=True)
        sys.exit(2)
    except (ServiceError, TopicLayoutError, FrameworkVersionError) as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="overwrite example files already there")
def init(directory: Path, force: bool) -> None:
    """Write the commented example config and rule file into DIRECTORY/config (default: here)."""
    from .examples import write_examples

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

    from .services import PartExited, Parts, Stopped, embedded_services
    from .streams.retention import broker_summary

    parts = Parts()  # from here on a signal stops whatever has been started, at any moment
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: parts.stopping.set())
    settings = _settings(ctx)
    if demo:
        from .demo import write_demo_members

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
        _run(serve)
    except Stopped:
        pass
    except PartExited as exc:
        click.echo(f"mallstream up: {exc}\nmallstream up: stopped the other parts", err=True)
        sys.exit(1)


def _login_help(settings: Settings, show_key: bool) -> str:
    """How to log in to the board and the API; the demo prints the local admin key itself."""
    from .auth import KeyStore

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
    from .streams.worker import run_worker

    settings, extend = _settings(ctx), None
    if demo:
        from .demo import attach_demo, with_demo_members

        settings, extend = with_demo_members(settings), None if vip else attach_demo
    _run(run_worker, settings, extend=extend, loglevel=ctx.meta["loglevel"], vip=vip)


@main.command()
@click.pass_context
def gateway(ctx: click.Context) -> None:
    """Bridge the configured devices (serial, MQTT, HTTP push) to Kafka, buffering on disk; Ctrl-C stops."""
    import signal
    import threading

    from .devices.bridges import BridgeConfigError
    from .devices.gateway import run_gateway

    settings = _settings(ctx)
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
    from .replay import GroupOffsets, wait_until_processed
    from .replay import replay as send

    settings = _settings(ctx)
    started = time.monotonic()
    with _broker_errors():
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


@contextmanager
def _broker_errors() -> Iterator[None]:
    """A broker that stayed away (or refused a record) is one line on stderr and exit 1, not a hang or a traceback."""
    from .sending import BrokerError

    try:
        yield
    except BrokerError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)


def _worker_url(settings: Settings, path: str) -> str:
    return f"http://127.0.0.1:{settings.worker.web_port}{path}"


@main.command("import-poslog")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mall", "mall_id", help="mall the stores belong to (default: the first in the config)")
@click.pass_context
def import_poslog(ctx: click.Context, files: tuple[Path, ...], mall_id: str | None) -> None:
    """Publish ARTS POSLog files as receipts; unreadable transactions go to dead letters."""
    from zoneinfo import ZoneInfo

    from tqdm import tqdm

    from .devices.pos_producer import PosProducer
    from .devices.poslog import PosLogState, decode_poslog
    from .sending import broker_errors, producer_limits
    from .transports import kafka_options

    settings = _settings(ctx)
    mall = pick_mall(settings, mall_id)
    state, sent, rejected = PosLogState(), 0, 0
    with (
        _broker_errors(),
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
    from .querying import QueryError, raw

    try:
        sys.stdout.buffer.write(raw(_settings(ctx), query, fmt))
    except QueryError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("member_id")
@click.option("--as-of", "as_of", help="a date (end of that day) or local time at or after the member's last event")
@click.pass_context
def member(ctx: click.Context, member_id: str, as_of: str | None) -> None:
    """Everything the running worker knows about a member, as JSON: balances, P(alive), stage, segment, class."""

    from .auth import command_headers

    settings = _settings(ctx)
    query = f"?{urllib.parse.urlencode({'as_of': as_of})}" if as_of else ""
    request = urllib.request.Request(
        _worker_url(settings, f"/member/{urllib.parse.quote(member_id, safe='')}/{query}"),
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


def _post_to_worker(settings: Settings, path: str, params: dict[str, object]) -> dict:
    """POST to the local worker (which forwards to the member's owner); prints errors and exits 1."""
    import json

    from .auth import command_headers

    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    request = urllib.request.Request(
        _worker_url(settings, f"{path}?{query}"), data=b"", method="POST", headers=command_headers(settings)
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.rules.answer_timeout_s + 10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode(), err=True)
        if exc.code == 401:
            click.echo(NO_KEY_HINT, err=True)
    except urllib.error.URLError:
        click.echo(f"mallstream: no worker answers on port {settings.worker.web_port}; start `mallstream up`", err=True)
    sys.exit(1)


@main.group()
def loyalty() -> None:
    """Service-desk operations on a member card, with who and why on the ledger; once per --op-id."""


def _desk_operation(function):
    """The options every service-desk command shares; a retry with the same --op-id changes nothing."""
    for option in reversed(
        [
            click.argument("member_id"),
            click.option("--op-id", required=True, help="the desk's ticket or operation id: a retry with it is safe"),
            click.option("--by", "by", required=True, help="who does it (staff id)"),
            click.option("--why", "why", required=True, help="why, as it will stand on the ledger"),
        ]
    ):
        function = option(function)
    return function


def _operate(ctx: click.Context, **params: object) -> None:
    import json

    answer = _post_to_worker(_settings(ctx), "/operations/", params)
    click.echo(json.dumps(answer, indent=2))
    if answer.get("rejected"):
        sys.exit(1)


@loyalty.command("adjust")
@_desk_operation
@click.option("--points", type=int, required=True, help="points to add (negative: take away)")
@click.pass_context
def loyalty_adjust(ctx: click.Context, member_id: str, op_id: str, by: str, why: str, points: int) -> None:
    """Correct a member's points balance."""
    _operate(ctx, member_id=member_id, op_id=op_id, by=by, why=why, action="adjust", points=points)


@loyalty.command("rebate")
@_desk_operation
@click.option("--strategy", "strategy_id", required=True, help="a rebate strategy of the rule file with mode: manual")
@click.option("--points", type=int, required=True, help="points to convert (at most the balance)")
@click.pass_context
def loyalty_rebate(
    ctx: click.Context, member_id: str, op_id: str, by: str, why: str, strategy_id: str, points: int
) -> None:
    """Convert points into stored value at the service desk."""
    _operate(
        ctx, member_id=member_id, op_id=op_id, by=by, why=why, action="rebate", strategy_id=strategy_id, points=points
    )


@loyalty.command("status")
@_desk_operation
@click.argument("status", type=click.Choice(["active", "lost", "frozen", "recalled"]))
@click.pass_context
def loyalty_status(ctx: click.Context, member_id: str, op_id: str, by: str, why: str, status: str) -> None:
    """Report a card lost, freeze, recall or reactivate it."""
    _operate(ctx, member_id=member_id, op_id=op_id, by=by, why=why, action="status", status=status)


@loyalty.command("run-schedule")
@click.option("--at", "at", required=True, help="the moment, with UTC offset: 2026-12-31T00:00:00+08:00")
@click.option("--by", "by", help="who runs it (default: the key's name), for the audit log")
@click.option("--why", "why", help="why it is run by hand, for the audit log")
@click.pass_context
def loyalty_run_schedule(ctx: click.Context, at: str, by: str | None, why: str | None) -> None:
    """Run the scheduled operations (rebate runs, expiry, birthdays, reminders) as of an explicit moment."""
    answer = _post_to_worker(_settings(ctx), "/schedule/", {"at": at, "by": by, "why": why})
    click.echo(f"schedule ticks at {answer['at']} sent to {answer['partitions']} partitions")


@main.group()
def keys() -> None:
    """API keys for the worker's and the gateway's HTTP endpoints; stored hashed in auth.keys_file."""


def _key_store(ctx: click.Context):
    from .auth import KeyStore

    return KeyStore.of(_settings(ctx))


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES), help="what the key may do (README: Security)")
@click.option(
    "--name", required=True, help="who or what holds it: a person, a till, a camera (unique among active keys)"
)
@click.option("--zone", "zones", multiple=True, help="counter_staff: a place whose alerts they handle (repeatable)")
@click.pass_context
def keys_create(ctx: click.Context, role: str, name: str, zones: tuple[str, ...]) -> None:
    """Make a key and print it once: only its hash is kept."""
    store = _key_store(ctx)
    try:
        record, key = store.create(name, role, zones)
    except ValueError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(2)
    click.echo(key)
    scope = f" for {', '.join(record.zones)}" if record.zones else ""
    click.echo(
        f"created key {record.key_id} '{record.name}' ({record.role}{scope}) in {store.path}; the key above is "
        "shown only now: send it as 'Authorization: Bearer <key>' or as the basic-auth password",
        err=True,
    )


@keys.command("list")
@click.option("--all", "show_all", is_flag=True, help="revoked keys too")
@click.pass_context
def keys_list(ctx: click.Context, show_all: bool) -> None:
    """The keys: id, name, role, zones, created and revoked; never the keys themselves."""
    from tabulate import tabulate

    records = [r for r in _key_store(ctx).records() if show_all or r.revoked_at is None]
    click.echo(
        tabulate(
            [(r.key_id, r.name, r.role, ",".join(r.zones), r.created_at, r.revoked_at or "") for r in records],
            headers=["id", "name", "role", "zones", "created", "revoked"],
        )
    )


@keys.command("revoke")
@click.argument("name_or_id")
@click.pass_context
def keys_revoke(ctx: click.Context, name_or_id: str) -> None:
    """Revoke the active key with this name or id; running workers and gateways refuse it at once."""
    revoked = _key_store(ctx).revoke(name_or_id)
    if not revoked:
        click.echo(f"mallstream: no active key named or numbered {name_or_id!r}", err=True)
        sys.exit(1)
    for record in revoked:
        click.echo(f"revoked key {record.key_id} '{record.name}' ({record.role})")


@main.command()
@click.option(
    "--rules",
    "rules_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the proposed rule file",
)
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON-lines receipts (as `replay` takes); other event types are skipped",
)
@click.option("--plot", "plot_to", type=click.Path(dir_okay=False, path_type=Path), help="also draw the costs to a PNG")
@click.pass_context
def backtest(ctx: click.Context, rules_path: Path, input_file: Path, plot_to: Path | None) -> None:
    """Replay history through the current and a proposed rule file: per-rule outcomes and cost, live state untouched."""
    from .backtesting import plot_backtest, read_receipts, render_backtest
    from .streams.core.backtest import backtest as run
    from .streams.core.rules import RuleFile

    settings = _settings(ctx)
    try:
        current = RuleFile(settings.resolve(settings.rules.file)).current()
        proposed = RuleFile(rules_path).current()
    except ConfigError as exc:
        click.echo(f"mallstream: bad rules: {exc}", err=True)
        sys.exit(2)
    point_value = settings.rules.point_value_cents
    if point_value != int(point_value):
        click.echo("mallstream: backtests need a whole number of cents in rules.point_value_cents", err=True)
        sys.exit(2)
    report = run(read_receipts(input_file), current, proposed, int(point_value))
    click.echo(render_backtest(report))
    if plot_to is not None:
        plot_backtest(report, plot_to)
        click.echo(f"plot written to {plot_to}", err=True)


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

    checkout = Path(__file__).resolve().parent.parent
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


@main.group()
def report() -> None:
    """Tables (and plots) from ClickHouse for a time range."""


def _window_options(function):
    """--from, --to, --interval, --mall, --format and --plot, as every interval report takes them."""
    options = [
        click.option("--from", "start", type=click.DateTime(LOCAL_TIMES), required=True, help="local time of the mall"),
        click.option(
            "--to", "end", type=click.DateTime(LOCAL_TIMES), required=True, help="local time of the mall (exclusive)"
        ),
        click.option("--interval", type=click.Choice(list(INTERVALS)), default="60m", show_default=True),
        click.option("--mall", "mall_id", help="mall id from the config (default: the first)"),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True),
        click.option(
            "--plot", "plot_to", type=click.Path(dir_okay=False, path_type=Path), help="also draw it to a PNG"
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _report(ctx: click.Context, mall_id: str | None, start, end, interval: str):
    """The settings, the mall and the report window the options describe."""
    from zoneinfo import ZoneInfo

    from .reports import ReportWindow

    settings = _settings(ctx)
    mall = pick_mall(settings, mall_id)
    zone = ZoneInfo(mall.timezone)
    window = ReportWindow(
        mall.id, mall.timezone, start.replace(tzinfo=zone), end.replace(tzinfo=zone), INTERVALS[interval]
    )
    return settings, mall, window


def _query(settings: Settings, query: str) -> list[dict]:
    from .querying import QueryError, rows

    try:
        return rows(settings, query)
    except QueryError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)


def _intervals(read) -> str:
    """A plot title's intervals, as answered (a 15-minute report of last year is answered by the hour)."""
    return f"{read.window.interval_minutes}-minute intervals"


def _plotted(plot_to: Path | None, draw) -> None:
    if plot_to is not None:
        draw(plot_to)
        click.echo(f"plot written to {plot_to}", err=True)


compare_option = click.option(
    "--compare",
    type=click.Choice(COMPARISONS),
    help="each interval beside the same interval a year before, and the change",
)


@report.command("footfall")
@_window_options
@click.option(
    "--by",
    type=click.Choice(VISITOR_LEVELS),
    default="entrance",
    show_default=True,
    help="mall: with --visitors or --period",
)
@click.option("--visitors", is_flag=True, help="visitors (staff deducted) instead of people counted")
@click.option(
    "--period",
    type=click.Choice(PERIODS),
    help="visitors per day, week or month: totals, per day, share, busiest --interval",
)
@compare_option
@click.pass_context
def report_footfall(
    ctx: click.Context,
    start,
    end,
    interval: str,
    by: str,
    mall_id: str | None,
    fmt: str,
    plot_to: Path | None,
    visitors: bool,
    period: str | None,
    compare: str | None,
) -> None:
    """People (or visitors) in, out, total and net per interval, by entrance, floor, zone, store or counter."""
    from .reports import (
        COLUMNS,
        FOOTFALL_GRAINS,
        PERIOD_COLUMNS,
        VISITOR_GRAINS,
        FootfallQuery,
        compare_readings,
        compared,
        compared_columns,
        period_sql,
        plot,
        plot_compared,
        plot_periods,
        reading,
        render,
    )

    settings, mall, window = _report(ctx, mall_id, start, end, interval)
    name = mall.name or mall.id
    if period:
        if compare:
            raise click.BadParameter("compares intervals, not periods", param_hint="--compare")
        read = reading(VISITOR_GRAINS, window)
        found = _query(settings, period_sql(window, period, by, read))
        click.echo(render(found, fmt, PERIOD_COLUMNS, read))
        _plotted(plot_to, lambda path: plot_periods(found, f"{name}: visitors per {period} by {by}", path))
        return
    if by == "mall" and not visitors:
        raise click.BadParameter("people counts are per counter; use --visitors for the mall", param_hint="--by")
    what = "visitors" if visitors else "footfall"
    if compare:
        read, then = compare_readings(VISITOR_GRAINS if visitors else FOOTFALL_GRAINS, window)
        found = compared(
            _query(settings, FootfallQuery(read.window, by, visitors).sql(read)),
            _query(settings, FootfallQuery(then.window, by, visitors).sql(then)),
            ("interval_start", "place"),
            ("in", "out"),
        )
        click.echo(render(found, fmt, compared_columns(COLUMNS, ("in", "out")), read))
        _plotted(
            plot_to,
            lambda path: plot_compared(
                found, f"{name}: {what} in by {by} against last year, {_intervals(read)}", path, "in"
            ),
        )
        return
    query = FootfallQuery(window, by, visitors)
    read = query.reading()
    found = _query(settings, query.sql(read))
    click.echo(render(found, fmt, read=read))
    _plotted(plot_to, lambda path: plot(found, f"{name}: {what} by {by}, {_intervals(read)}", path))


@report.command("capture")
@_window_options
@click.pass_context
def report_capture(
    ctx: click.Context, start, end, interval: str, mall_id: str | None, fmt: str, plot_to: Path | None
) -> None:
    """Capture rate (剥离率): store entries ÷ passers-by at the aisle counter before it (footfall.aisle_counters)."""
    from .reports import CAPTURE_COLUMNS, capture_sql

    settings, mall, window = _report(ctx, mall_id, start, end, interval)
    if not mall.footfall.aisle_counters:
        click.echo(f"mallstream: mall {mall.id} has no footfall.aisle_counters: no store has passers-by", err=True)
        sys.exit(1)
    _ratio_report(
        settings,
        mall,
        window,
        capture_sql,
        CAPTURE_COLUMNS,
        fmt,
        plot_to,
        "capture rate",
        y="capture_rate",
        group="store",
        ylabel="entries per passer-by",
    )


def _ratio_report(
    settings: Settings, mall, window, sql, columns, fmt: str, plot_to: Path | None, what: str, **plotting: str
) -> None:
    """A ratio per interval from the visitor roll-ups at the finest grain kept: printed, and drawn as percent lines."""
    from .reports import VISITOR_GRAINS, for_reading, plot_lines, reading, render

    read = reading(VISITOR_GRAINS, window)
    found = _query(settings, for_reading(sql, read))
    click.echo(render(found, fmt, columns, read))
    _plotted(
        plot_to,
        lambda path: plot_lines(
            found, f"{mall.name or mall.id}: {what}, {_intervals(read)}", path, percent=True, **plotting
        ),
    )


@report.command("attraction")
@_window_options
@click.pass_context
def report_attraction(
    ctx: click.Context, start, end, interval: str, mall_id: str | None, fmt: str, plot_to: Path | None
) -> None:
    """Floor attraction: visitors entering each floor ÷ visitors entering the mall, per interval."""
    from .reports import ATTRACTION_COLUMNS, attraction_sql

    settings, mall, window = _report(ctx, mall_id, start, end, interval)
    _ratio_report(
        settings,
        mall,
        window,
        attraction_sql,
        ATTRACTION_COLUMNS,
        fmt,
        plot_to,
        "floor attraction",
        y="attraction",
        group="floor",
        ylabel="share of mall entries",
    )


@report.command("conversion")
@_window_options
@click.pass_context
def report_conversion(
    ctx: click.Context, start, end, interval: str, mall_id: str | None, fmt: str, plot_to: Path | None
) -> None:
    """Bag rate: transactions ÷ visitors per store and for the mall, per interval."""
    from .reports import CONVERSION_COLUMNS, VISITOR_GRAINS, conversion_sql, plot_lines, reading, render

    settings, mall, window = _report(ctx, mall_id, start, end, interval)
    read = reading(VISITOR_GRAINS, window)
    found = _query(settings, conversion_sql(window, read))
    click.echo(render(found, fmt, CONVERSION_COLUMNS, read))
    _plotted(
        plot_to,
        lambda path: plot_lines(
            found,
            f"{mall.name or mall.id}: conversion, {_intervals(read)}",
            path,
            y="conversion",
            ylabel="transactions per visitor",
            percent=True,
        ),
    )


@report.command("occupancy")
@_window_options
@click.option("--by", type=click.Choice(AREA_LEVELS), default="mall", show_default=True)
@click.pass_context
def report_occupancy(
    ctx: click.Context, start, end, interval: str, mall_id: str | None, fmt: str, plot_to: Path | None, by: str
) -> None:
    """Corrected occupancy per area (mean, peak, density at peak), departures and mean dwell, per interval."""
    from .reports import OCCUPANCY_COLUMNS, OCCUPANCY_GRAINS, occupancy_sql, plot_lines, reading, render

    settings, mall, window = _report(ctx, mall_id, start, end, interval)
    read = reading(OCCUPANCY_GRAINS, window)
    found = _query(settings, occupancy_sql(window, by, read))
    click.echo(render(found, fmt, OCCUPANCY_COLUMNS, read))
    _plotted(
        plot_to,
        lambda path: plot_lines(
            found,
            f"{mall.name or mall.id}: occupancy by {by}, {_intervals(read)} (mean)",
            path,
            y="occupancy_mean",
            group="area",
            ylabel="people inside",
        ),
    )


@report.command("parking")
@_window_options
@compare_option
@click.pass_context
def report_parking(
    ctx: click.Context,
    start,
    end,
    interval: str,
    mall_id: str | None,
    fmt: str,
    plot_to: Path | None,
    compare: str | None,
) -> None:
    """Occupancy per car park over time, stays of the cars leaving, and full-park alerts."""
    from .parking_report import (
        ALERT_COLUMNS,
        COMPARED_FIGURES,
        PARKING_COLUMNS,
        PARKING_GRAINS,
        alerts_sql,
        parking_sql,
        plot_parking,
    )
    from .reports import compare_readings, compared, compared_columns, plot_compared, reading, render

    settings, mall, window = _report(ctx, mall_id, start, end, interval)
    name = mall.name or mall.id
    if compare:
        read, then = compare_readings(PARKING_GRAINS, window)
        found = compared(
            _query(settings, parking_sql(read.window, read)),
            _query(settings, parking_sql(then.window, then)),
            ("interval_start", "car_park"),
            COMPARED_FIGURES,
        )
        click.echo(render(found, fmt, compared_columns(PARKING_COLUMNS, COMPARED_FIGURES), read))
        _plotted(
            plot_to,
            lambda path: plot_compared(
                found, f"{name}: cars in against last year, {_intervals(read)}", path, "entries", group="car_park"
            ),
        )
        return
    read = reading(PARKING_GRAINS, window)
    found = _query(settings, parking_sql(window, read))
    alerts = _query(settings, alerts_sql(window))
    click.echo(render(found, fmt, PARKING_COLUMNS, read))
    if fmt == "table" and alerts:
        click.echo(f"\nfull-park alerts:\n{render(alerts, fmt, ALERT_COLUMNS)}")
    _plotted(plot_to, lambda path: plot_parking(found, alerts, f"{name}: car parks, {_intervals(read)}", path))


@report.command("customers")
@click.option(
    "--by",
    type=click.Choice(CUSTOMER_SPLITS),
    help="each value class's visits by weekday or hour, spend by price band; or the members' favourite brands",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="with --by")
@click.option("--plot", "plot_to", type=click.Path(dir_okay=False, path_type=Path), help="also draw it to a PNG")
@click.pass_context
def report_customers(ctx: click.Context, by: str | None, fmt: str, plot_to: Path | None) -> None:
    """The value pyramid (head count and spend share per class) and members per lifecycle stage; or --by."""
    from .customer_reports import customer_report, plot_customers, plot_split, render_customers, split_sql
    from .querying import QueryError
    from .reports import render

    settings = _settings(ctx)
    if by:
        sql, columns = split_sql(by, settings)
        found = _query(settings, sql)
        click.echo(render(found, fmt, columns))
        _plotted(plot_to, lambda path: plot_split(found, by, path))
        return
    try:
        pyramid, lifecycle = customer_report(settings)
    except QueryError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)
    click.echo(render_customers(pyramid, lifecycle))
    _plotted(plot_to, lambda path: plot_customers(pyramid, lifecycle, path))


@report.command("campaigns")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="first business day")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="business day after the last")
@click.option("--mall", "mall_id", help="mall id from the config (default: the first)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
def report_campaigns(ctx: click.Context, start, end, mall_id: str | None, fmt: str) -> None:
    """Voucher campaigns: who took part, vouchers and their value, redemptions, triggering spend; and by class."""
    from .customer_reports import CAMPAIGN_COLUMNS, COMPOSITION_COLUMNS, COMPOSITION_SQL, campaign_sql
    from .querying import quote
    from .reports import render

    settings = _settings(ctx)
    mall = pick_mall(settings, mall_id)
    days = f"business_day >= toDate({quote(f'{start:%Y-%m-%d}')}) AND business_day < toDate({quote(f'{end:%Y-%m-%d}')})"
    found = _query(settings, campaign_sql(quote(mall.id), days))
    composition = _query(settings, COMPOSITION_SQL)
    if fmt == "json":
        import json

        click.echo(
            json.dumps(
                {
                    "campaigns": [{c: row[c] for c in CAMPAIGN_COLUMNS} for row in found],
                    "composition": [{c: row[c] for c in COMPOSITION_COLUMNS} for row in composition],
                },
                ensure_ascii=False,
                indent=1,
                default=str,
            )
        )
        return
    click.echo(render(found, fmt, CAMPAIGN_COLUMNS))
    if fmt == "table":
        click.echo(f"\nwho took part, as they are now (all time):\n{render(composition, fmt, COMPOSITION_COLUMNS)}")


@main.group()
def churn() -> None:
    """The churn model behind P(alive)."""


@churn.command("fit")
@click.option(
    "--input",
    "input_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON-lines events (as `replay` takes): fit on the members' sale days",
)
@click.option("--from-clickhouse", is_flag=True, help="fit on the member snapshots the stream wrote")
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="the day T runs to (default: the day after the last purchase)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="parameters file (default: customers.params_file; a running worker takes it up)",
)
@click.pass_context
def churn_fit(ctx: click.Context, input_file: Path | None, from_clickhouse: bool, as_of, out: Path | None) -> None:
    """Fit BG/NBD (Fader, Hardie & Lee 2005) to the members' purchase days; cron it to refit on a schedule."""
    import datetime as dt

    from .churn_fit import (
        FittedParams,
        purchase_days_from_receipts,
        save_params,
        summarise_histories,
        summary_from_snapshots,
    )
    from .querying import QueryError
    from .streams.core.bgnbd import fit_bgnbd

    if (input_file is None) == (not from_clickhouse):
        raise click.UsageError("give exactly one of --input FILE and --from-clickhouse")
    settings = _settings(ctx)
    try:
        as_of_day = as_of and as_of.date().toordinal()
        if input_file is not None:
            days = [sorted(d) for d in purchase_days_from_receipts(input_file).values()]
            as_of_day = as_of_day or max((max(d) for d in days), default=0) + 1
            summary = summarise_histories(days, as_of_day)
        else:
            snapshots = _snapshot_histories(settings)
            as_of_day = as_of_day or max((last.toordinal() for _, last, _ in snapshots), default=0) + 1
            summary = summary_from_snapshots(snapshots, as_of_day)
        started = time.perf_counter()
        params = fit_bgnbd(*summary)
        seconds = time.perf_counter() - started
    except (ValueError, RuntimeError, QueryError) as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)
    path = out or settings.resolve(settings.customers.params_file)
    members = len(summary[0])
    save_params(path, FittedParams(params, dt.date.fromordinal(as_of_day), members, dt.datetime.now(dt.UTC)))
    click.echo(f"r={params.r:.6g} alpha={params.alpha:.6g} a={params.a:.6g} b={params.b:.6g}")
    click.echo(
        f"fitted on {members:,} members as of {dt.date.fromordinal(as_of_day)} in {seconds:.3f} s; written to {path}"
    )


def _snapshot_histories(settings: Settings) -> list:
    """(first purchase, last purchase, repeat days) of every member who purchased, from ClickHouse."""
    import datetime as dt

    from .querying import rows

    found = rows(
        settings,
        """SELECT first_purchase, last_purchase, repeat_days FROM {db}.customer_snapshots FINAL
                              WHERE first_purchase IS NOT NULL""",
    )
    return [
        (dt.date.fromisoformat(r["first_purchase"]), dt.date.fromisoformat(r["last_purchase"]), int(r["repeat_days"]))
        for r in found
    ]


@main.group()
def simulate() -> None:
    """Generate simulated device and till streams."""


@simulate.command("day")
@click.option("--scenario", type=click.Choice(["weekday", "weekend", "outage"]), default="weekday", show_default=True)
@click.option("--mall", "mall_id", help="mall id from the config (default: the first)")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--duration", type=float, help="hours from opening to simulate (default: the whole day)")
@click.option("--visitors", type=int, help="override the scenario's number of visitors")
@click.option(
    "--speed",
    type=float,
    default=0.0,
    show_default=True,
    help="live: keep event spacing, this many times faster (0: flat out)",
)
@click.option(
    "--record",
    "record_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write a JSON-lines file for `mallstream replay` instead of driving the devices; "
    "ground truth goes beside it (.truth.json)",
)
@click.option(
    "--record-raw",
    "raw_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="live: also keep what each device sent in this directory (for `simulate play-raw`)",
)
@click.pass_context
def simulate_day(
    ctx: click.Context,
    scenario: str,
    mall_id: str | None,
    seed: int,
    duration: float | None,
    visitors: int | None,
    speed: float,
    record_to: Path | None,
    raw_dir: Path | None,
) -> None:
    """A whole mall day of device and till events, with its ground truth.

    Without --record it is played live: emulated devices (serial ptys, MQTT, HTTP pushes, tills)
    send it through a gateway started here to the configured broker and MQTT broker.
    """
    import dataclasses
    import datetime as dt

    from .simulators import mallday

    if record_to is not None and raw_dir is not None:
        raise click.UsageError("--record-raw keeps what devices send live; it cannot go with --record")
    settings = _settings(ctx)
    mall = pick_mall(settings, mall_id)
    day = mallday.scenario(scenario, mall, seed=seed, duration=dt.timedelta(hours=duration) if duration else None)
    if visitors is not None:
        day = dataclasses.replace(day, visitors=visitors)
    started = time.monotonic()
    if record_to is not None:
        mallday.record(settings, mall.id, day, record_to)
        click.echo(
            f"recorded {day.visitors:,} visitors to {record_to} in {time.monotonic() - started:.1f} s; "
            f"ground truth in {mallday.truth_path(record_to)}"
        )
        return
    from .simulators.live import simulate_live

    run = _live(settings, lambda: simulate_live(settings, mall, day, speed=speed, raw_dir=raw_dir)[0])
    click.echo(
        f"played {day.visitors:,} visitors live in {run.seconds:.1f} s"
        + (f"; raw device traffic and ground truth in {raw_dir}" if raw_dir else "")
    )


@simulate.command("history")
@click.option(
    "--scenario",
    "scenarios",
    type=click.Choice(["all", "purchases", "counters", "parking"]),
    multiple=True,
    default=("all",),
    show_default=True,
    help="which history to write (repeatable)",
)
@click.option(
    "--size",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="share of the full size: members, counters, car parks and days each scale by its square root",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="the last day (default: 30 days before today)")
@click.option("--mall", "mall_id", help="mall id from the config (default: the first)")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="directory for <scenario>.jsonl, <scenario>.truth.json and mall.yaml",
)
@click.pass_context
def simulate_history(
    ctx: click.Context, scenarios: tuple[str, ...], size: float, seed: int, end, mall_id: str | None, out: Path
) -> None:
    """Months of history with ground truth: 18 months of member receipts, a year of counter ticks, three months
    of car-park gate reads. mall.yaml is the config with the scenarios' counters and car parks added."""
    import dataclasses

    import yaml

    from .simulators.history import SCENARIOS, History, history_config, record

    settings = _settings(ctx)
    history = History(pick_mall(settings, mall_id), size=size, seed=seed)
    if end is not None:
        history = dataclasses.replace(history, end=end.date())
    out.mkdir(parents=True, exist_ok=True)
    config = out / "mall.yaml"
    base = yaml.safe_load(Path(ctx.obj).read_text(encoding="utf-8"))
    try:
        config.write_text(
            yaml.safe_dump(history_config(base, history), allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        for scenario in SCENARIOS if "all" in scenarios else dict.fromkeys(scenarios):
            started = time.monotonic()
            recorded = record(history, scenario, out)
            click.echo(
                f"{scenario}: {recorded.events:,} events to {recorded.path} in "
                f"{time.monotonic() - started:.1f} s; ground truth in {recorded.truth_path}"
            )
    except ValueError as exc:  # a mall without stores or places for the devices
        click.echo(f"mallstream: {settings.source}: {exc}", err=True)
        sys.exit(2)
    click.echo(
        f"replay against {config} (the config with these counters and car parks): mallstream -c {config} up, "
        f"then mallstream -c {config} replay {out}/<scenario>.jsonl --wait"
    )


@simulate.command("play-raw")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--speed", type=float, default=0.0, show_default=True, help="keep spacing, this many times faster (0: flat out)"
)
@click.pass_context
def simulate_play_raw(ctx: click.Context, directory: Path, speed: float) -> None:
    """Send what devices sent (a --record-raw directory) to a gateway started here, unit for unit."""
    from .simulators.live import play_raw

    settings = _settings(ctx)
    run = _live(settings, lambda: play_raw(settings, directory, speed=speed))
    click.echo(f"played {sum(run.units.values()):,} units in {run.seconds:.1f} s")


def _live(settings: Settings, play):
    """Run a live play, print what each device sent and what the gateway made of it; problems exit non-zero."""
    from kafka.errors import KafkaError

    from .devices.bridges import BridgeConfigError
    from .simulators.emulators import EmulatorError
    from .simulators.live import GatewayNotDrained

    try:
        run = play()
    except BridgeConfigError as exc:
        click.echo(f"mallstream: bad device config in {settings.source}: {exc}", err=True)
        sys.exit(2)
    except (GatewayNotDrained, EmulatorError, KafkaError, OSError) as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{'device':<16} {'transport':<9} {'played':>8} {'units':>8} {'events':>8} {'rejects':>8}")
    for device, transport, played, units, events, rejects in run.rows():
        click.echo(f"{device:<16} {transport:<9} {played:>8} {units:>8} {events:>8} {rejects:>8}")
    return run


@simulate.command("members")
@click.option("--scenario", type=click.Choice(["weekday", "weekend", "outage"]), default="weekday", show_default=True)
@click.option("--mall", "mall_id", help="mall id from the config (default: the first)")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="CSV for members.source in the config",
)
@click.pass_context
def simulate_members(ctx: click.Context, scenario: str, mall_id: str | None, seed: int, out: Path) -> None:
    """Member master data for the VIP cards a simulated day hands out (tier, name, EPC, liked brands)."""
    from .simulators import mallday
    from .simulators.members import vip_members
    from .streams.master_data import write_master_data

    settings = _settings(ctx)
    mall = pick_mall(settings, mall_id)
    written = write_master_data(out, vip_members(mall, mallday.scenario(scenario, mall, seed=seed), seed=seed))
    click.echo(f"wrote {written:,} members to {out}; set members.source to it")


@simulate.command("pos")
@click.option("--count", type=int, default=10_000, show_default=True)
@click.option("--members", type=int, default=1000, show_default=True)
@click.option("--member-share", type=float, default=1.0, show_default=True, help="share of sales with a card")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("-o", "--output", type=click.File("wb"), default="-")
@click.pass_context
def simulate_pos(ctx: click.Context, count: int, members: int, member_share: float, seed: int, output) -> None:
    """A day of receipts as JSON lines, stores taken from the config."""
    from tqdm import tqdm

    from .simulators.pos import PosDay, receipts
    from .streams.records import encode

    settings = _settings(ctx)
    stores = tuple(store.id for mall in settings.malls for store in mall.stores)
    day = PosDay(stores=stores, members=members, member_share=member_share, seed=seed)
    quiet = output.name == "<stdout>" or count < 50_000
    for txn in tqdm(receipts(day, count), total=count, unit="receipt", disable=quiet):
        output.write(encode(txn) + b"\n")


from .dashboards.cli import dashboards  # noqa: E402  (its commands need main defined)

main.add_command(dashboards)

if __name__ == "__main__":
    main()
