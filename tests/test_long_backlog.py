"""Months of history met as a backlog by a worker with a small message limit: no crash, exact, every row in its mall.

The history is written to the broker before the worker starts, as after any restart or
outage, stamped more than a year in the past, with counter outages, a burst day and cars
parked across midnights; no event names its mall. The worker produces records of at most
64 KB (``kafka.max_request_size``): batches, roll-ups and the malls' states must split or
page to fit, or the worker dies with MessageSizeTooLargeError.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mallstream.replay import wait_until_processed
from mallstream.settings import load
from tests.conftest import SCALE, WorkerProcess, cli, write_config

pytestmark = [pytest.mark.pipeline, pytest.mark.heavy, pytest.mark.timeout(600)]

DAYS = int(40 * SCALE)
COUNTERS = [f"C-{n:02d}" for n in range(1, 22)]
CAR_PARKS = ("P-1", "P-2", "P-3")
#: the history ends this long before today, so it is older than every TTL
START = dt.datetime.combine(dt.date.today() - dt.timedelta(days=400 + DAYS), dt.time(), dt.UTC)
LIMIT = 65_536


def backlog_config(tmp_path: Path, broker: str) -> Path:
    path = write_config(tmp_path, broker, kafka={"max_request_size": LIMIT})
    data = yaml.safe_load(path.read_text())
    mall = data["malls"][0]
    mall["timezone"] = "UTC"  # local days are UTC days, as the truth counts them
    # a clock that may lag its newest event by six hours at most: inputs read further apart would make late rows
    mall["footfall"]["max_clock_lag_s"] = 6 * 3600
    places = [e["id"] for e in mall["entrances"]] + [s["id"] for s in mall["stores"]]
    mall["people_counters"] = [{"id": c, "place": places[i % len(places)]} for i, c in enumerate(COUNTERS)]
    mall["rfid_readers"] = []
    mall["car_parks"] = [
        {
            "id": park,
            "capacity": 5000,
            "gates": [
                {"id": f"{park}-in", "place": park, "direction": "entry"},
                {"id": f"{park}-out", "place": park, "direction": "exit"},
            ],
        }
        for park in CAR_PARKS
    ]
    path.write_text(yaml.safe_dump(data))
    return path


def hourly_ticks(rng: random.Random) -> tuple[list[dict], Counter]:
    """An hourly tick per counter, stamped at the hour's end, with outages and a burst day; truth per counter-day."""
    events, truth = [], Counter()
    down = {counter: rng.randrange(DAYS) for counter in COUNTERS[::4]}  # a few counters each lose three days
    for hour in range(DAYS * 24):
        start = START + dt.timedelta(hours=hour)
        burst = 5 if hour // 24 == DAYS // 2 else 1
        for counter in COUNTERS:
            if counter in down and down[counter] <= hour // 24 < down[counter] + 3:
                continue
            people = rng.randrange(0, 80) * burst if 8 <= start.hour < 22 else 0
            events.append(
                {
                    "type": "footfall_tick",
                    "counter_id": counter,
                    "in": people,
                    "out": 0,
                    "interval_s": 3600,
                    "ts": (start + dt.timedelta(hours=1)).isoformat(),
                }
            )
            truth[counter, start.date().isoformat()] += people
    return events, truth


def gate_events(rng: random.Random) -> tuple[list[dict], Counter]:
    """Cars in and out of each car park, many overnight; truth: stays per car park."""
    events, stays = [], Counter()
    for park in CAR_PARKS:
        for car in range(DAYS * 40):
            plate = f"{park[-1]}A{car:05d}"
            entry = START + dt.timedelta(seconds=rng.randrange(DAYS * 86_400 - 3 * 86_400))
            leave = entry + dt.timedelta(
                seconds=rng.choice((rng.randrange(600, 14_400), rng.randrange(20_000, 130_000)))
            )
            for direction, moment in (("entry", entry), ("exit", leave)):
                events.append(
                    {
                        "type": "parking_event",
                        "gate_id": f"{park}-{'in' if direction == 'entry' else 'out'}",
                        "car_park_id": park,
                        "plate": plate,
                        "direction": direction,
                        "ts": moment.isoformat(),
                    }
                )
            stays[park] += 1
    return events, stays


def busy_members_receipts() -> list[dict]:
    """Two members who buy ten times a day: their cards, which remember every receipt, outgrow a 64 KB record."""
    receipts = []
    for member in ("M-BUSY-1", "M-BUSY-2"):
        for n in range(DAYS * 10):
            ts = START + dt.timedelta(days=n // 10, hours=10 + n % 10)
            lines = [
                {
                    "sku": f"SKU-{i}",
                    "qty": 1,
                    "unit_price": "25.50",
                    "amount": "25.50",
                    "category": "clothing",
                    "brand": f"Brand-{i}",
                }
                for i in range(6)
            ]
            receipts.append(
                {
                    "type": "pos_transaction",
                    "txn_id": f"{member}-{n:05d}",
                    "store_id": "S201",
                    "workstation_id": "S201-T1",
                    "seq": n,
                    "ts": ts.isoformat(),
                    "business_day": ts.date().isoformat(),
                    "kind": "sale",
                    "total": "153.00",
                    "member_id": member,
                    "lines": lines,
                }
            )
    return receipts


def sql(config: Path, query: str) -> list[dict]:
    return [json.loads(line) for line in cli(config, "sql", query, "--format", "json").stdout.splitlines() if line]


def test_months_of_history_met_as_a_backlog_under_a_64_kb_limit_are_stored_exactly_in_their_mall(tmp_path, broker):
    config = backlog_config(tmp_path, broker)
    mall_id = load(config).malls[0].id
    rng = random.Random(19)
    ticks, people = hourly_ticks(rng)
    gates, stays = gate_events(rng)
    gates.sort(key=lambda event: event["ts"])
    recording = tmp_path / "history.jsonl"
    receipts = busy_members_receipts()
    recording.write_text("".join(json.dumps(event) + "\n" for event in ticks + gates + receipts))
    cli(config, "replay", str(recording))  # the whole history waits in the broker before the worker starts

    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        deadline = time.monotonic() + 400
        while not wait_until_processed(load(config), timeout=5, progress=False):
            assert worker.process.poll() is None, f"the worker died: {worker.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the backlog was never worked off"

        unplaced = sql(
            config,
            f"SELECT (SELECT count() FROM {{db}}.footfall_ticks WHERE mall_id != '{mall_id}') AS ticks, "
            f"(SELECT count() FROM {{db}}.parking_events WHERE mall_id != '{mall_id}') AS gates",
        )
        assert unplaced == [{"ticks": 0, "gates": 0}]

        stored = sql(
            config,
            "SELECT counter_id, toString(toDate(hour)) AS day, sum(count_in) AS people "
            f"FROM {{db}}.footfall_hourly FINAL WHERE mall_id = '{mall_id}' GROUP BY counter_id, day",
        )
        assert {(row["counter_id"], row["day"]): int(row["people"]) for row in stored} == +people

        rolled = sql(
            config,
            "SELECT key, toString(day) AS day, sum(visitors_in) AS people FROM {db}.visitors_daily "
            f"WHERE mall_id = '{mall_id}' AND level = 'counter' GROUP BY key, day HAVING people > 0",
        )
        assert {(row["key"], row["day"]): int(row["people"]) for row in rolled} == +people

        late = sql(config, "SELECT count() AS n FROM {db}.footfall_rollups WHERE late AND visitors_in != 0")
        assert int(late[0]["n"]) == 0, "inputs read far ahead of the others are held back, so no tick comes late"

        parked = sql(
            config,
            "SELECT car_park_id, count() AS stays FROM {db}.parking_stays "
            f"WHERE mall_id = '{mall_id}' AND entry IS NOT NULL GROUP BY car_park_id",
        )
        assert {row["car_park_id"]: int(row["stays"]) for row in parked} == stays

        for member in ("M-BUSY-1", "M-BUSY-2"):
            card = json.loads(cli(config, "member", member).stdout)
            assert card["receipts"] == DAYS * 10, "every receipt is on the card, which is kept in pages"
        entries = sql(
            config, "SELECT count(DISTINCT txn_id) AS n FROM {db}.ledger_entries WHERE cause = 'points_earned'"
        )
        assert int(entries[0]["n"]) == len(receipts)

        burst_day = (START + dt.timedelta(days=DAYS // 2)).date()
        report = json.loads(
            cli(
                config,
                "report",
                "footfall",
                "--by",
                "counter",
                "--interval",
                "60m",
                "--format",
                "json",
                "--from",
                burst_day.isoformat(),
                "--to",
                (burst_day + dt.timedelta(days=1)).isoformat(),
            ).stdout
        )
        assert report, "the report found nothing of the burst day"
        assert worker.process.poll() is None
    finally:
        worker.stop()
