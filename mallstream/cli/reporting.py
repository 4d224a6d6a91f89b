"""Reports for floor managers and marketers (footfall, capture, occupancy, parking, customers, campaigns), churn fit."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..cli_common import LOCAL_TIMES, pick_mall
from ..customer_reports import CUSTOMER_SPLITS
from ..reports import AREA_LEVELS, COMPARISONS, FORMATS, INTERVALS, PERIODS, VISITOR_LEVELS
from ..settings import Settings
from .base import main, settings_of


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

    from ..reports import ReportWindow

    settings = settings_of(ctx)
    mall = pick_mall(settings, mall_id)
    zone = ZoneInfo(mall.timezone)
    window = ReportWindow(
        mall.id, mall.timezone, start.replace(tzinfo=zone), end.replace(tzinfo=zone), INTERVALS[interval]
    )
    return settings, mall, window


def _query(settings: Settings, query: str) -> list[dict]:
    from ..querying import QueryError, rows

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
    from ..reports import (
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
    from ..reports import CAPTURE_COLUMNS, capture_sql

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
    from ..reports import VISITOR_GRAINS, for_reading, plot_lines, reading, render

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
    from ..reports import ATTRACTION_COLUMNS, attraction_sql

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
    from ..reports import CONVERSION_COLUMNS, VISITOR_GRAINS, conversion_sql, plot_lines, reading, render

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
    from ..reports import OCCUPANCY_COLUMNS, OCCUPANCY_GRAINS, occupancy_sql, plot_lines, reading, render

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
    from ..parking_report import (
        ALERT_COLUMNS,
        COMPARED_FIGURES,
        PARKING_COLUMNS,
        PARKING_GRAINS,
        alerts_sql,
        parking_sql,
        plot_parking,
    )
    from ..reports import compare_readings, compared, compared_columns, plot_compared, reading, render

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
    from ..customer_reports import customer_report, plot_customers, plot_split, render_customers, split_sql
    from ..querying import QueryError
    from ..reports import render

    settings = settings_of(ctx)
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
    from ..customer_reports import CAMPAIGN_COLUMNS, COMPOSITION_COLUMNS, COMPOSITION_SQL, campaign_sql
    from ..querying import quote
    from ..reports import render

    settings = settings_of(ctx)
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

    from ..churn_fit import (
        FittedParams,
        purchase_days_from_receipts,
        save_params,
        summarise_histories,
        summary_from_snapshots,
    )
    from ..querying import QueryError
    from ..streams.core.bgnbd import fit_bgnbd

    if (input_file is None) == (not from_clickhouse):
        raise click.UsageError("give exactly one of --input FILE and --from-clickhouse")
    settings = settings_of(ctx)
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

    from ..querying import rows

    found = rows(
        settings,
        """SELECT first_purchase, last_purchase, repeat_days FROM {db}.customer_snapshots FINAL
                              WHERE first_purchase IS NOT NULL""",
    )
    return [
        (dt.date.fromisoformat(r["first_purchase"]), dt.date.fromisoformat(r["last_purchase"]), int(r["repeat_days"]))
        for r in found
    ]
