"""The loyalty desk from the command line: manual operations, schedule runs, API keys, rule backtests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..auth import ROLES
from ..settings import ConfigError
from .base import main, post_to_worker, settings_of


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

    answer = post_to_worker(settings_of(ctx), "/operations/", params)
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
    answer = post_to_worker(settings_of(ctx), "/schedule/", {"at": at, "by": by, "why": why})
    click.echo(f"schedule ticks at {answer['at']} sent to {answer['partitions']} partitions")


@main.group()
def keys() -> None:
    """API keys for the worker's and the gateway's HTTP endpoints; stored hashed in auth.keys_file."""


def _key_store(ctx: click.Context):
    from ..auth import KeyStore

    return KeyStore.of(settings_of(ctx))


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
    from ..backtesting import plot_backtest, read_receipts, render_backtest
    from ..streams.core.backtest import backtest as run
    from ..streams.core.rules import RuleFile

    settings = settings_of(ctx)
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
