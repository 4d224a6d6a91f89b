"""Simulated days, histories, members and tills, for replays without hardware."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..cli_common import pick_mall
from ..settings import Settings
from .base import main, settings_of


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

    from ..simulators import mallday

    if record_to is not None and raw_dir is not None:
        raise click.UsageError("--record-raw keeps what devices send live; it cannot go with --record")
    settings = settings_of(ctx)
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
    from ..simulators.live import simulate_live

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

    from ..simulators.history import SCENARIOS, History, history_config, record

    settings = settings_of(ctx)
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
    from ..simulators.live import play_raw

    settings = settings_of(ctx)
    run = _live(settings, lambda: play_raw(settings, directory, speed=speed))
    click.echo(f"played {sum(run.units.values()):,} units in {run.seconds:.1f} s")


def _live(settings: Settings, play):
    """Run a live play, print what each device sent and what the gateway made of it; problems exit non-zero."""
    from kafka.errors import KafkaError

    from ..devices.bridges import BridgeConfigError
    from ..simulators.emulators import EmulatorError
    from ..simulators.live import GatewayNotDrained

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
    from ..simulators import mallday
    from ..simulators.members import vip_members
    from ..streams.master_data import write_master_data

    settings = settings_of(ctx)
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

    from ..simulators.pos import PosDay, receipts
    from ..streams.records import encode

    settings = settings_of(ctx)
    stores = tuple(store.id for mall in settings.malls for store in mall.stores)
    day = PosDay(stores=stores, members=members, member_share=member_share, seed=seed)
    quiet = output.name == "<stdout>" or count < 50_000
    for txn in tqdm(receipts(day, count), total=count, unit="receipt", disable=quiet):
        output.write(encode(txn) + b"\n")
