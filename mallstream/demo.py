"""``mallstream up --demo``: a simulated mall day feeding the hub, and live figures on the terminal.

The figures include the broker's data size and the oldest record it keeps per topic group, as
the retention keeper (streams/retention.py) last found them.

Today's mall day (visitors over the daily curve, VIP cards at the readers, tills, people
counters, car-park gates) is played into the hub's input topics from opening time at 60
times its own pace, a minute a second, so the loyalty, VIP, footfall, parking and customer agents all work
on it. VIP alerts show on the board at ``/board/``. Ids carry the run, so a second run
adds to the first instead of being recognised as a replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import msgspec
from faust.exceptions import NotReady

from .settings import Settings
from .simulators import mallday
from .simulators.members import vip_members
from .simulators.pacing import Pacer
from .streams import topics
from .streams.app import Hub
from .streams.master_data import write_master_data
from .streams.records import DEVICE_TYPES, InputEvent, PosTransaction, encode

#: Event time played per second of wall time.
SPEED = 60.0
VISITORS = 20_000

FIGURES = """
SELECT (SELECT count() FROM {db}.ledger_entries) AS entries,
       (SELECT sumIf(delta, cause = 'points_earned') FROM {db}.ledger_entries) AS earned,
       (SELECT countIf(cause = 'voucher_issued') FROM {db}.ledger_entries) AS vouchers,
       (SELECT sum(count_in) FROM {db}.footfall_ticks) AS people_in,
       (SELECT count() FROM {db}.alerts) AS alerts,
       (SELECT count() FROM {db}.vip_visits FINAL) AS visits
"""


def _demo_members_path(settings: Settings) -> Path:
    return settings.resolve(settings.worker.state_dir).parent / "demo-members.csv"


def write_demo_members(settings: Settings) -> None:
    """Member master data for the simulated VIP cards, unless the config names its own.

    `up --demo` writes it once, before its workers start and read it.
    """
    if settings.members.source is not None:
        return
    path = _demo_members_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    mall = settings.malls[0]
    write_master_data(path, vip_members(mall, mallday.scenario("weekday", mall)))


def with_demo_members(settings: Settings) -> Settings:
    """The settings a demo worker runs with: the members :func:`write_demo_members` wrote, unless the config names its own."""
    if settings.members.source is not None:
        return settings
    return settings.model_copy(
        update={"members": settings.members.model_copy(update={"source": _demo_members_path(settings)})}
    )


def _tagged(event: InputEvent, run_id: str, index: int) -> InputEvent:
    if isinstance(event, PosTransaction):
        return msgspec.structs.replace(
            event,
            txn_id=f"demo{run_id}-{event.txn_id}",
            original_txn_id=event.original_txn_id and f"demo{run_id}-{event.original_txn_id}",
        )
    return msgspec.structs.replace(event, event_id=f"demo{run_id}-{index}")


def attach_demo(hub: Hub) -> None:
    """Add the feeder task and the reporting timer to the worker."""
    mall = hub.settings.malls[0]
    run_id = dt.datetime.now().strftime("%H%M%S")
    day = dataclasses.replace(
        mallday.scenario("weekday", mall, seed=int(run_id)), visitors=VISITORS, day=dt.date.today()
    )

    @hub.app.task
    async def feed_the_mall() -> None:
        events = await asyncio.to_thread(lambda: mallday.simulate(mall, day).events)
        opening = dt.datetime.combine(day.day, day.opening, ZoneInfo(mall.timezone)).timestamp()
        pacer = Pacer(SPEED)
        for index, event in enumerate(events):
            moment = event.ts.timestamp()
            # staff come in before opening: that part goes at once, the day at its own pace
            await asyncio.sleep(pacer.delay_for(moment) if moment >= opening else 0)
            event = _tagged(event, run_id, index)
            kind = type(event).__struct_config__.tag
            key = topics.INPUT_KEYS[kind](msgspec.to_builtins(event))
            try:
                await hub.topic(topics.INPUT_TOPICS[kind]).send(key=key.encode() if key else None, value=encode(event))
            except NotReady:  # the worker is stopping (Ctrl-C) and has shut its producer
                return
            hub.counters["demo_device_events" if kind in DEVICE_TYPES else "demo_receipts"] += 1

    @hub.app.timer(5.0)
    async def report() -> None:
        _, rows = await asyncio.to_thread(hub.warehouse.query, FIGURES)
        entries, earned, vouchers, people_in, alerts, visits = rows[0]
        c = hub.counters
        click.echo(
            f"{dt.datetime.now():%H:%M:%S}  receipts {c['demo_receipts']:>6,}  device events {c['demo_device_events']:>7,}"
            f"  ledger rows in ClickHouse {entries:>7,}  points {earned:>9,}  vouchers {vouchers:>4,}"
            f"  people in {people_in:>6,}  VIP alerts {alerts:>4,}  VIP visits {visits:>4,}  dead letters {c['dead_letters']:>3,}"
            f"\n          {hub.keeper.report.line()}"
        )
