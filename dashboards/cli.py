"""`mallstream dashboards`: export, check, push and preview the Grafana dashboards."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from mallstream.cli_common import LOCAL_TIMES, load_settings, pick_mall
from mallstream.settings import ConfigError, Mall, Settings

from .grafana import PROVISIONING


def _settings(ctx: click.Context) -> Settings:
    return load_settings(ctx.find_root().obj)


def _range(mall: Mall, start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """The range in the mall's time zone; by default today so far, as the live boards open."""
    zone = ZoneInfo(mall.timezone)
    now = dt.datetime.now(zone)
    return (
        (start.replace(tzinfo=zone) if start else now.replace(hour=0, minute=0, second=0, microsecond=0)),
        (end.replace(tzinfo=zone) if end else now),
    )


provisioning_option = click.option(
    "--provisioning",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=PROVISIONING,
    show_default=True,
    help="provisioning folder whose dashboards are read (or written by export)",
)
range_options = [
    click.option(
        "--from", "start", type=click.DateTime(LOCAL_TIMES), help="local time of the mall (default: today 00:00)"
    ),
    click.option("--to", "end", type=click.DateTime(LOCAL_TIMES), help="local time of the mall (default: now)"),
    click.option("--mall", "mall_id", help="mall id from the config (default: the first)"),
]


def with_range(command):
    for option in reversed(range_options):
        command = option(command)
    return command


@click.group()
def dashboards() -> None:
    """Grafana dashboards: generated from Python, checked, pushed, previewed."""


@dashboards.command()
@provisioning_option
@click.pass_context
def export(ctx: click.Context, root: Path) -> None:
    """Write the dashboards' JSON, the datasource and the dashboard provider for Grafana's provisioning.

    With the embedded engine the datasource is the worker's ClickHouse endpoint (clickhouse.http_port), queried
    with the analyst key Grafana finds in $MALLSTREAM_GRAFANA_KEY; with a server, the server.
    """
    from .boards import build_all
    from .grafana import write_provisioning

    settings = _settings(ctx)
    try:
        written = write_provisioning(settings, build_all(settings), root)
    except ConfigError as exc:
        click.echo(f"mallstream: bad config: {exc}", err=True)
        sys.exit(2)
    for path in written:
        click.echo(f"wrote {path}")


@dashboards.command()
@provisioning_option
@with_range
@click.option("--require-data", is_flag=True, help="a panel that returns no rows fails too")
@click.pass_context
def check(ctx: click.Context, root: Path, start, end, mall_id: str | None, require_data: bool) -> None:
    """Validate each dashboard against Grafana's schema and run each panel's SQL for the range."""
    from .check import problems
    from .grafana import read_boards
    from .schema import SchemaCheckMissing

    settings = _settings(ctx)
    mall = pick_mall(settings, mall_id)
    boards = read_boards(root)
    if not boards:
        click.echo(f"mallstream: no dashboards in {root}; run `mallstream dashboards export`", err=True)
        sys.exit(1)
    try:
        found = problems(settings, boards, mall.id, *_range(mall, start, end), require_data)
    except SchemaCheckMissing as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)
    for problem in found:
        where = f"dashboard {problem.dashboard!r}" + (f", panel {problem.panel!r}" if problem.panel else "")
        click.echo(f"{where}: {problem.message}", err=True)
    panels = sum(len(board["panels"]) for board in boards)
    if found:
        click.echo(f"check: {len(found)} problem(s) in {len(boards)} dashboards", err=True)
        sys.exit(1)
    click.echo(
        f"check: {len(boards)} dashboards, {panels} panels: schema valid, every query ran"
        + (" and returned rows" if require_data else "")
    )


@dashboards.command()
@click.option("--url", required=True, help="Grafana's address, e.g. http://127.0.0.1:3000")
@click.option(
    "--token",
    help="service account token; better in the environment, where the process list does not "
    "show it: GRAFANA_TOKEN, or GRAFANA_TOKEN_FILE naming a file that holds it",
)
@provisioning_option
@click.pass_context
def push(ctx: click.Context, url: str, token: str | None, root: Path) -> None:
    """Create or update the folder, the ClickHouse datasource and the dashboards in a running Grafana."""
    from mallstream.settings import read_secret

    from .grafana import PushError, datasource, password_env, read_boards
    from .grafana import push as push_to

    settings = _settings(ctx)
    token = token or read_secret("GRAFANA_TOKEN")
    if not token:
        raise click.UsageError("no Grafana token: set GRAFANA_TOKEN (or GRAFANA_TOKEN_FILE), or pass --token")
    try:
        done = push_to(url, token, datasource(settings, read_secret(password_env(settings)) or ""), read_boards(root))
    except PushError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)
    for line in done:
        click.echo(line)


@dashboards.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("preview"), show_default=True)
@provisioning_option
@with_range
@click.pass_context
def preview(ctx: click.Context, out: Path, root: Path, start, end, mall_id: str | None) -> None:
    """Draw each dashboard from live data to a PNG (one per dashboard), laid out like the board."""
    from .check import panel_results
    from .grafana import read_boards
    from .preview import render

    settings = _settings(ctx)
    mall = pick_mall(settings, mall_id)
    out.mkdir(parents=True, exist_ok=True)
    for board in read_boards(root):
        path = out / f"{board['uid']}.png"
        render(board, list(panel_results(settings, board, mall.id, *_range(mall, start, end))), path)
        click.echo(f"wrote {path}")
