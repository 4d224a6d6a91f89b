"""Months of history through ``mallstream up`` (embedded broker, worker, chdb), against the generator's ground truth.

``mallstream simulate history`` writes the three scenarios (member receipts, counter ticks, car-park
gate reads) ending four months ago, so everything is older than the hub's 90-day TTLs, and the config
with their counters and car parks; ``mallstream up`` runs the hub on it, ``mallstream replay --wait``
feeds each scenario, and ClickHouse is compared with the truth the generator counted on its own.
``make history`` runs this at full size (MALLSTREAM_SCALE=1000). Occupancy is read through
`mallstream report parking`, as a floor manager would, from the roll-up that outlives the gate events' TTL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mallstream.querying import rows
from mallstream.services import wait_for_port
from mallstream.settings import load
from tests.conftest import NOIDA, SCALE, cli, free_port, write_config

#: SCALE 1: about 800 members over 17 days, 2 counters over 12 days, 2 car parks over 3 days; 1000: full size.
SIZE = min(0.001 * SCALE, 1.0)
#: Full size replays over 3.5 million events at some hundreds a second.
WAIT_S = 600 + 20 * SCALE
END = dt.date.today() - dt.timedelta(days=120)
INTEGERS = " SETTINGS output_format_json_quote_64bit_integers = 0"

pytestmark = [pytest.mark.heavy, pytest.mark.pipeline, pytest.mark.timeout(2 * WAIT_S)]


@contextlib.contextmanager
def mallstream_up(config: Path, log: Path) -> Iterator[None]:
    """`mallstream up` on the config (its embedded broker, the worker), stopped as Ctrl-C would stop it."""
    settings = load(config)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mallstream.cli", "-c", str(config), "up"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
        )
    try:
        deadline = time.monotonic() + 120
        while not wait_for_port("127.0.0.1", settings.worker.web_port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mallstream up did not start: {log.read_text()[-3000:]}")
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run([NOIDA, "down", "--data-dir", str(settings.kafka.data_dir)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict:
    """Every scenario replayed into one hub; what ClickHouse holds afterwards, and the truths."""
    tmp = tmp_path_factory.mktemp("history")
    out = tmp / "out"
    base = write_config(tmp, f"127.0.0.1:{free_port()}", kafka={"mode": "embedded", "data_dir": str(tmp / "broker")})
    cli(base, "simulate", "history", "--size", str(SIZE), "--end", END.isoformat(), "--out", str(out))
    config = out / "mall.yaml"
    settings = load(config)
    zone = settings.malls[0].timezone
    truths = {
        scenario: json.loads((out / f"{scenario}.truth.json").read_text(encoding="utf-8"))
        for scenario in ("purchases", "counters", "parking")
    }
    days = sorted({day for truth in truths["parking"]["car_parks"].values() for day in truth["days"]})
    with mallstream_up(config, tmp / "up.log"):
        for scenario in ("purchases", "counters", "parking"):
            cli(config, "replay", str(out / f"{scenario}.jsonl"), "--wait", "--timeout", str(WAIT_S), timeout=WAIT_S)
        found = {name: rows(settings, query.replace("{tz}", zone) + INTEGERS) for name, query in QUERIES.items()}
        last = (dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)).isoformat()
        found["parking_days"] = json.loads(
            cli(
                config, "report", "parking", "--from", days[0], "--to", last, "--interval", "1d", "--format", "json"
            ).stdout
        )
    return {"rows": found, "truth": truths, "mall_id": settings.malls[0].id, "out": out}


QUERIES = {
    "hourly": """SELECT counter_id, mall_id, formatDateTime(hour, '%Y-%m-%dT%H:00:00Z') AS hour, sum(count_in) AS i,
                        sum(count_out) AS o
                 FROM {db}.footfall_hourly GROUP BY counter_id, mall_id, hour""",
    "daily": """SELECT counter_id, toString(toDate(hour, '{tz}')) AS day, sum(count_in) AS i, sum(count_out) AS o
                FROM {db}.footfall_hourly GROUP BY counter_id, day""",
    "stays": """SELECT car_park_id, count() AS stays, countIf(entry IS NOT NULL) AS known,
                       sumIf(toUnixTimestamp64Milli(exit) - toUnixTimestamp64Milli(entry), entry IS NOT NULL) AS ms
                FROM {db}.parking_stays GROUP BY car_park_id""",
    "exits": """SELECT car_park_id, toString(toDate(exit, '{tz}')) AS day, count() AS n
                FROM {db}.parking_stays GROUP BY car_park_id, day""",
    "reads": """SELECT car_park_id, toString(toDate(ts, '{tz}')) AS day, count() AS n
                FROM {db}.parking_events GROUP BY car_park_id, day""",
    "receipts": """SELECT member_id, countIf(kind = 'sale') AS sales, countIf(kind = 'return') AS returns,
                          sum(total_cents) AS spend
                   FROM {db}.receipts_by_member FINAL GROUP BY member_id""",
    "receipt_days": """SELECT toString(business_day) AS day, countIf(kind = 'sale') AS sales,
                              countIf(kind = 'return') AS returns
                       FROM {db}.receipts_by_member FINAL GROUP BY day""",
    "snapshots": """SELECT member_id, toString(first_purchase) AS first, toString(last_purchase) AS last,
                           repeat_days, receipts, spend_cents
                    FROM {db}.customer_snapshots FINAL""",
}


def hourly_truth(hub: dict) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (counter, hour): tuple(flows)
        for counter, hours in hub["truth"]["counters"]["hourly"].items()
        for hour, flows in hours.items()
    }


def test_the_scenarios_are_long_histories_with_gaps_bursts_dropouts_and_flaws(hub):
    purchases, counters, parking = (hub["truth"][s] for s in ("purchases", "counters", "parking"))
    assert purchases["last_day"] == counters["last_day"] == parking["last_day"] == END.isoformat()
    members = purchases["members"].values()
    assert any(m["returns"] for m in members) and any(m["x"] == 0 for m in members) and any(m["x"] > 1 for m in members)
    sales = [day["sales"] for day in purchases["receipts_per_day"].values()]
    assert max(sales) > 2 * sorted(sales)[len(sales) // 2], "a sale day stands out"
    lines = (hub["out"] / "counters.jsonl").read_text().splitlines()
    assert sum('"mall_id"' not in line for line in lines) > len(lines) // 10, "feeds that leave mall_id out"
    assert {json.loads(line)["interval_s"] for line in lines} == {300, 3600}
    parks = parking["car_parks"].values()
    assert sum(p["stays"] - p["stays_with_entry"] for p in parks) > 0, "exits whose entry was never read"
    assert all(day["occupancy_at_end"] > 0 for p in parks for day in p["days"].values()), "cars stay overnight"


def test_footfall_per_counter_per_hour_and_per_day_equals_the_truth(hub):
    hourly: dict[tuple[str, str], tuple[int, int]] = {}
    for row in hub["rows"]["hourly"]:
        key = (row["counter_id"], row["hour"])
        before = hourly.get(key, (0, 0))
        hourly[key] = (before[0] + row["i"], before[1] + row["o"])
    assert hourly == hourly_truth(hub)
    daily = {(row["counter_id"], row["day"]): [row["i"], row["o"]] for row in hub["rows"]["daily"]}
    assert daily == {
        (counter, day): flows
        for counter, days in hub["truth"]["counters"]["daily"].items()
        for day, flows in days.items()
    }


def test_every_footfall_row_carries_the_mall_of_its_counter(hub):
    hourly = {
        (row["counter_id"], row["hour"]): (row["i"], row["o"])
        for row in hub["rows"]["hourly"]
        if row["mall_id"] == hub["mall_id"]
    }
    assert hourly == hourly_truth(hub)


def test_parking_stays_and_gate_reads_per_car_park_equal_the_truth(hub):
    parks = hub["truth"]["parking"]["car_parks"]
    assert {row["car_park_id"]: (row["stays"], row["known"], row["ms"]) for row in hub["rows"]["stays"]} == {
        park: (truth["stays"], truth["stays_with_entry"], truth["duration_ms"]) for park, truth in parks.items()
    }
    assert {(row["car_park_id"], row["day"]): row["n"] for row in hub["rows"]["exits"]} == {
        (park, day): figures["exits"]
        for park, truth in parks.items()
        for day, figures in truth["days"].items()
        if figures["exits"]
    }
    assert {(row["car_park_id"], row["day"]): row["n"] for row in hub["rows"]["reads"]} == {
        (park, day): figures["reads"] for park, truth in parks.items() for day, figures in truth["days"].items()
    }


def test_occupancy_at_each_days_end_equals_the_truth_in_the_report_of_that_old_history(hub):
    """Months stamped long ago: the gate-event rows are past their TTL, the hourly roll-up still answers."""
    parks = hub["truth"]["parking"]["car_parks"]
    assert {
        (row["car_park"], row["interval_start"][:10]): row["occupancy_end"] for row in hub["rows"]["parking_days"]
    } == {
        (park, day): figures["occupancy_at_end"]
        for park, truth in parks.items()
        for day, figures in truth["days"].items()
    }


def test_receipts_per_member_and_per_day_equal_the_truth(hub):
    truth = hub["truth"]["purchases"]
    assert {row["member_id"]: (row["sales"], row["returns"], row["spend"]) for row in hub["rows"]["receipts"]} == {
        member: (m["sales"], m["returns"], m["spend_cents"]) for member, m in truth["members"].items()
    }
    assert {row["day"]: {"sales": row["sales"], "returns": row["returns"]} for row in hub["rows"]["receipt_days"]} == {
        day: figures for day, figures in truth["receipts_per_day"].items() if figures["sales"] or figures["returns"]
    }


def test_member_snapshots_hold_the_bgnbd_inputs_and_net_spend_of_the_truth(hub):
    truth = hub["truth"]["purchases"]["members"]
    assert {
        row["member_id"]: (row["first"], row["last"], row["repeat_days"], row["receipts"], row["spend_cents"])
        for row in hub["rows"]["snapshots"]
    } == {
        member: (m["first_purchase"], m["last_purchase"], m["x"], m["sales"], m["spend_cents"])
        for member, m in truth.items()
    }


def test_simulate_history_writes_the_same_files_for_the_same_seed(tmp_path: Path, hub):
    config = hub["out"] / "mall.yaml"
    again = tmp_path / "again"
    cli(
        config,
        "simulate",
        "history",
        "--size",
        str(SIZE),
        "--end",
        END.isoformat(),
        "--out",
        str(again),
        "--scenario",
        "parking",
    )
    assert (again / "parking.jsonl").read_bytes() == (hub["out"] / "parking.jsonl").read_bytes()
    assert (again / "parking.truth.json").read_bytes() == (hub["out"] / "parking.truth.json").read_bytes()
