"""``mallstream up --demo``: simulated tills feeding the hub, and live figures on the terminal."""

from __future__ import annotations

import asyncio
import datetime as dt
import click
import msgspec

from .simulators.pos import PosDay, receipts
from .streams import topics
from .streams.app import Hub
from .streams.records import encode

RECEIPTS_PER_SECOND = 50

FIGURES = """
SELECT count() AS entries, uniqExact(member_id) AS members,
       sumIf(delta, account = 'points' AND delta > 0) AS earned,
       sumIf(-delta, account = 'points' AND delta < 0) AS reversed, countIf(cause = 'voucher_issued') AS vouchers
FROM {db}.ledger_entries
"""


def attach_demo(hub: Hub) -> None:
    """Add a feeder task and a reporting timer to the worker."""
    settings = hub.settings
    stores = tuple(store.id for mall in settings.malls for store in mall.stores)
    run_id = dt.datetime.now().strftime("%H%M%S")

    @hub.app.task
    async def feed_tills() -> None:
        topic = hub.topic(topics.POS_TRANSACTIONS)
        day = PosDay(stores=stores, members=200, member_share=0.8, day=dt.date.today(), seed=int(run_id))
        for txn in receipts(day, 1_000_000):
            # ids unique to this run, so a second demo run adds instead of being recognised as a replay
            txn = msgspec.structs.replace(
                txn,
                txn_id=f"demo{run_id}-{txn.txn_id}",
                original_txn_id=txn.original_txn_id and f"demo{run_id}-{txn.original_txn_id}",
            )
            await topic.send(key=txn.routing_key.encode(), value=encode(txn))
            await asyncio.sleep(1 / RECEIPTS_PER_SECOND)

    @hub.app.timer(5.0)
    async def report() -> None:
        _, rows = await asyncio.to_thread(hub.warehouse.query, FIGURES)
        entries, members, earned, reversed_, vouchers = rows[0]
        c = hub.counters
        click.echo(
            f"{dt.datetime.now():%H:%M:%S}  receipts routed {c['receipts_routed']:>7,}  "
            f"anonymous {c['receipts_anonymous']:>6,}  ledger rows in ClickHouse {entries:>7,}  "
            f"members {members:>4,}  points earned {earned:>10,}  reversed {reversed_:>8,}  vouchers {vouchers:>5,}  "
            f"dead letters {c['dead_letters']:>3,}"
        )
