"""Visitor, period, conversion, occupancy and parking reports on two replayed simulated days, against their truth."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from mallstream.dashboards.check import panel_results
from mallstream.dashboards.grafana import PROVISIONING, read_boards
from mallstream.replay import wait_until_processed
from mallstream.settings import load
from mallstream.simulators.mallday import GroundTruth, MallDay, record
from tests.conftest import SCALE, WorkerProcess, cli, running_broker
from tests.test_footfall_pipeline import footfall_config

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(400)]

MONDAY = dt.date(2026, 11, 23)
#: Short days, counters ticking every 5 minutes (from two hours before opening to two after closing) into 5-minute
#: roll-ups: a quick test.
DAY = MallDay(
    visitors=int(1500 * SCALE),
    staff=20,
    staff_badges=True,
    seed=31,
    day=MONDAY,
    closing=dt.time(16),
    parking_share=0.3,
    tick_seconds=300,
)
CAPACITY = int(45 * SCALE)
#: Stores and the counter in the aisle before them (one store each): the atrium's, which staff never cross, and
#: two entrances', whose passers-by include staff.
AISLES = {"S101": "C-Z-atrium", "S201": "C-E-south", "S202": "C-E-north"}
WINDOW = ("--from", str(MONDAY), "--to", str(MONDAY + dt.timedelta(days=2)))


def report(config: Path, *args: str) -> list[dict]:
    return json.loads(cli(config, "report", *args, *WINDOW, "--format", "json").stdout)


def millis(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory) -> Iterator[str]:
    with running_broker(tmp_path_factory.mktemp("broker")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def two_days(tmp_path_factory, module_broker: str) -> tuple[Path, list[GroundTruth]]:
    """Monday and Tuesday replayed through a worker; the worker is stopped, so reports open the engine themselves."""
    tmp_path = tmp_path_factory.mktemp("reports")
    config = footfall_config(tmp_path, module_broker)
    data = yaml.safe_load(config.read_text())
    data["malls"][0]["car_parks"][0]["capacity"] = CAPACITY
    data["malls"][0]["footfall"]["bucket_s"] = DAY.tick_seconds
    data["malls"][0]["footfall"]["aisle_counters"] = AISLES
    config.write_text(yaml.safe_dump(data))
    settings = load(config)
    truths, recordings = [], []
    for number in range(2):
        recording = tmp_path / f"day{number}.jsonl"
        day = MallDay(**{**DAY.__dict__, "seed": DAY.seed + number, "day": MONDAY + dt.timedelta(days=number)})
        truths.append(record(settings, settings.malls[0].id, day, recording, progress=False))
        recordings.append(recording.read_bytes())
    both = tmp_path / "both.jsonl"
    both.write_bytes(b"".join(recordings))
    with WorkerProcess(config, tmp_path / "worker.log"):
        cli(config, "replay", str(both), "--wait")
        assert wait_until_processed(settings, timeout=120, progress=False)
    return config, truths


def entrance_hours(truth: GroundTruth, entrances: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(entrance, local hour start) -> visitors (in, out), as the report prints the hour."""
    return {
        (place, hour[:19].replace("T", " ")): (flows["in"], flows["out"])
        for place in entrances
        for hour, flows in truth.visitors.get(place, {}).items()
        if flows["in"] or flows["out"]
    }


def mall_arrivals_by_hour(truth: GroundTruth, entrances: list[str]) -> Counter:
    arrivals: Counter = Counter()
    for place in entrances:
        for hour, flows in truth.visitors.get(place, {}).items():
            arrivals[hour[:19].replace("T", " ")] += flows["in"]
    return arrivals


def test_visitors_and_period_summaries_equal_the_truth(two_days, tmp_path):
    config, truths = two_days
    mall = load(config).malls[0]
    entrances = [entrance.id for entrance in mall.entrances]

    hourly = report(config, "footfall", "--visitors", "--by", "entrance")
    reported = {(row["place"], row["interval_start"]): (row["in"], row["out"]) for row in hourly if row["total"]}
    assert reported == entrance_hours(truths[0], entrances) | entrance_hours(truths[1], entrances)
    people = report(config, "footfall", "--by", "entrance")
    assert sum(row["in"] for row in people) > sum(row["in"] for row in hourly), "people include staff, visitors not"
    by_day = report(config, "footfall", "--visitors", "--by", "mall", "--interval", "1d")
    assert [(row["interval_start"], row["in"]) for row in by_day] == [
        (f"{truth.day} 00:00:00", DAY.visitors) for truth in truths
    ]

    days = report(config, "footfall", "--period", "day", "--by", "mall", "--plot", str(tmp_path / "days.png"))
    assert [(row["period"], row["days"], row["in"], row["out"]) for row in days] == [
        (str(truth.day), 1, DAY.visitors, DAY.visitors) for truth in truths
    ]
    assert [row["share"] for row in days] == [0.5, 0.5], "each day's share of its week"
    for row, truth in zip(days, truths, strict=False):
        arrivals = mall_arrivals_by_hour(truth, entrances)
        assert row["peak_in"] == max(arrivals.values())
        assert arrivals[row["peak_start"]] == row["peak_in"], "the peak hour is named by its local start"

    for period in ("week", "month"):
        summary = report(config, "footfall", "--period", period, "--by", "entrance")
        for row in summary:
            entered = sum(
                truth.visitors[row["place"]][hour]["in"] for truth in truths for hour in truth.visitors[row["place"]]
            )
            assert (row["days"], row["in"], row["per_day"]) == (2, entered, round(entered / 2, 1)), row
        assert sorted(row["place"] for row in summary) == sorted(entrances)
        assert sum(row["share"] for row in summary) == pytest.approx(len(entrances))
    quarters = report(config, "footfall", "--period", "day", "--by", "entrance", "--interval", "15m")
    assert all(
        0 < row["peak_in"] <= row["in"] and row["peak_start"][14:16] in ("00", "15", "30", "45") for row in quarters
    )
    assert (tmp_path / "days.png").stat().st_size > 10_000


def test_conversion_is_transactions_per_visitor_per_store_and_for_the_mall(two_days, tmp_path):
    config, truths = two_days
    mall_id = load(config).malls[0].id
    table = cli(
        config,
        "report",
        "conversion",
        *WINDOW,
        "--interval",
        "1d",
        "--format",
        "csv",
        "--plot",
        str(tmp_path / "conversion.png"),
    ).stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    for truth in truths:
        today = [row for row in rows if row["interval_start"].startswith(str(truth.day))]
        sales = {store: figures["sales"] for store, figures in truth.transactions.items()}
        for row in today:
            place, visitors, transactions = row["place"], int(row["visitors"]), int(row["transactions"])
            if row["level"] == "mall":
                assert (visitors, transactions) == (DAY.visitors, sum(sales.values()))
            else:
                true_in = sum(flows["in"] for flows in truth.visitors[place].values())
                assert (visitors, transactions) == (true_in, sales.get(place, 0)), place
            assert float(row["conversion"]) == pytest.approx(transactions / visitors, abs=5e-5)
        assert {row["place"] for row in today} >= {mall_id, *sales}
    assert (tmp_path / "conversion.png").stat().st_size > 10_000


def footfall_panels(config: Path, start: dt.date, end: dt.date) -> dict[str, list[dict]]:
    settings = load(config)
    zone = ZoneInfo(settings.malls[0].timezone)
    board = next(board for board in read_boards(PROVISIONING) if board["uid"] == "mallstream-footfall")
    return {
        result.panel: result.rows
        for result in panel_results(
            settings, board, settings.malls[0].id, *(dt.datetime.combine(day, dt.time(), zone) for day in (start, end))
        )
    }


def test_capture_rate_is_store_entries_per_passer_by_in_its_aisle_in_the_report_and_the_panel(two_days, tmp_path):
    config, truths = two_days

    def crossed(truth: GroundTruth, place: str, ways: tuple[str, ...]) -> int:
        """Customers crossing; at an aisle (both ways), everyone: passers-by are what the counter counts."""
        people = (truth.visitors, truth.staff) if len(ways) == 2 else (truth.visitors,)
        return sum(flows[way] for who in people for flows in who.get(place, {}).values() for way in ways)

    rows = report(config, "capture", "--interval", "1d")
    by_day = {(row["interval_start"][:10], row["store"]): row for row in rows}
    for truth in truths:
        for store, counter in AISLES.items():
            passers = crossed(truth, counter.removeprefix("C-"), ("in", "out"))
            entries = crossed(truth, store, ("in",))
            row = by_day[(str(truth.day), store)]
            assert (row["passers_by"], row["entries"]) == (passers, entries) and passers > 0, store
            assert row["capture_rate"] == round(entries / passers, 4)
    assert {row["store"] for row in rows} == set(AISLES), "stores without an aisle counter have no capture rate"

    panel = footfall_panels(config, MONDAY, MONDAY + dt.timedelta(days=2))[
        "Capture rate: store entries ÷ passers-by in the aisle"
    ]
    both = {
        store: (
            sum(crossed(t, store, ("in",)) for t in truths),
            sum(crossed(t, counter.removeprefix("C-"), ("in", "out")) for t in truths),
        )
        for store, counter in AISLES.items()
    }
    assert {row["store"]: row["capture rate"] for row in panel} == pytest.approx(
        {store: entries / passers for store, (entries, passers) in both.items()}
    )
    hourly = cli(config, "report", "capture", *WINDOW, "--plot", str(tmp_path / "capture.png")).stdout
    assert hourly.startswith("grain: hour") and (tmp_path / "capture.png").stat().st_size > 10_000


def test_floor_attraction_is_each_floors_share_of_the_mall_entries_in_the_report_and_the_panel(two_days):
    config, truths = two_days
    mall = load(config).malls[0]
    floor_of = {entrance.id: entrance.floor for entrance in mall.entrances}
    entered: defaultdict[tuple[str, str], int] = defaultdict(int)
    for truth in truths:
        for entrance, floor in floor_of.items():
            entered[(str(truth.day), floor)] += sum(flows["in"] for flows in truth.visitors.get(entrance, {}).values())
    rows = report(config, "attraction", "--interval", "1d")
    assert {(row["interval_start"][:10], row["floor"]): (row["entries"], row["mall_entries"]) for row in rows} == {
        (day, floor): (n, DAY.visitors) for (day, floor), n in entered.items()
    }
    assert all(row["attraction"] == round(row["entries"] / DAY.visitors, 4) for row in rows)

    panel = footfall_panels(config, MONDAY, MONDAY + dt.timedelta(days=2))[
        "Floor attraction: floor entries ÷ mall entries"
    ]
    floors = {floor for floor in floor_of.values()}
    assert {row["floor"]: row["attraction"] for row in panel} == pytest.approx(
        {floor: sum(n for (_, f), n in entered.items() if f == floor) / (2 * DAY.visitors) for floor in floors}
    )


def test_occupancy_report_follows_the_truth_at_hour_boundaries(two_days, tmp_path):
    config, truths = two_days
    mall = load(config).malls[0]
    entrances = [entrance.id for entrance in mall.entrances]
    hourly = report(config, "occupancy", "--by", "mall", "--plot", str(tmp_path / "occupancy.png"))
    inside, at_hour_end = 0, {}
    for truth in truths:
        nets: defaultdict[str, int] = defaultdict(int)
        for place in entrances:
            for hour, flows in truth.visitors.get(place, {}).items():
                nets[hour[:19].replace("T", " ")] += flows["in"] - flows["out"]
        for hour in sorted(nets):
            inside += nets[hour]
            at_hour_end[hour] = inside
    # no exits are missed here, so the occupancy at each hour's end is exact, and the hour's peak at least that
    for row in hourly:
        assert row["occupancy_peak"] >= at_hour_end.get(row["interval_start"], 0), row
    assert max(row["occupancy_peak"] for row in hourly) >= max(at_hour_end.values())
    busiest = max(hourly, key=lambda row: row["occupancy_peak"])
    assert busiest["occupancy_peak"] <= DAY.visitors and busiest["dwell_min"] > 0
    stores = report(config, "occupancy", "--by", "store", "--interval", "15m")
    sized = {store.id: float(store.area_m2) for store in mall.stores if store.area_m2}
    for row in stores:
        if row["area"] in sized:
            assert row["density_peak"] == pytest.approx(row["occupancy_peak"] / sized[row["area"]], abs=1e-4), row
        else:
            assert row["density_peak"] is None, row
    assert (tmp_path / "occupancy.png").stat().st_size > 10_000


def test_parking_report_matches_the_stays_and_names_the_full_park(two_days, tmp_path):
    config, truths = two_days
    mall = load(config).malls[0]
    car_park = mall.car_parks[0].id
    hourly = report(config, "parking", "--plot", str(tmp_path / "parking.png"))
    stays = [(millis(s["entry"]), millis(s["exit"])) for truth in truths for s in truth.parking_stays]
    by_hour = {row["interval_start"]: row for row in hourly if row["car_park"] == car_park}
    zone = dt.timezone(dt.timedelta(hours=8))
    for start, row in by_hour.items():
        begins = dt.datetime.fromisoformat(start).replace(tzinfo=zone)
        ends = int((begins + dt.timedelta(hours=1)).timestamp() * 1000)
        assert row["occupancy_end"] == sum(entry < ends <= exit for entry, exit in stays), start
        leaving = [exit - entry for entry, exit in stays if ends - 3_600_000 <= exit < ends]
        assert row["exits"] == len(leaving), start
        if leaving:
            assert row["mean_stay_min"] == pytest.approx(statistics.mean(leaving) / 60_000, abs=0.051), start
    assert max(row["occupancy_peak"] for row in by_hour.values()) > 0.9 * CAPACITY
    assert sum(row["full_alerts"] for row in by_hour.values()) >= 1
    table = cli(config, "report", "parking", *WINDOW).stdout
    assert "full-park alerts" in table and car_park in table
    assert (tmp_path / "parking.png").stat().st_size > 10_000
