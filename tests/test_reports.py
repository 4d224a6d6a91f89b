"""`mallstream report footfall` on a replayed simulated day, checked against its ground truth."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict

import pytest

from mallstream.settings import Settings, load
from mallstream.simulators.mallday import GroundTruth, truth_path
from tests.conftest import WorkerProcess, cli, write_config

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(300)]


def people_per_entrance_hour(truth: GroundTruth, settings: Settings) -> dict[tuple[str, str], tuple[int, int]]:
    """Customers and staff through each counted entrance per local hour: what entrance counters count."""
    mall = settings.malls[0]
    counted_entrances = {c.place for c in mall.people_counters} & {e.id for e in mall.entrances}
    counted: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for by_place in (truth.visitors, truth.staff):
        for place, hours in by_place.items():
            if place not in counted_entrances:
                continue
            for hour, flows in hours.items():
                counted[(place, hour)][0] += flows["in"]
                counted[(place, hour)][1] += flows["out"]
    return {key: tuple(flows) for key, flows in counted.items() if any(flows)}


def test_hourly_footfall_per_entrance_equals_the_ground_truth_and_finer_intervals_add_up(broker, tmp_path):
    config = write_config(tmp_path, broker)
    recording = tmp_path / "day.jsonl"
    cli(
        config,
        "simulate",
        "day",
        "--scenario",
        "weekday",
        "--duration",
        "4",
        "--visitors",
        "3000",
        "--record",
        str(recording),
    )
    truth = GroundTruth.read(truth_path(recording))
    window = ("--from", "2026-11-23 00:00", "--to", "2026-11-24 00:00")

    with WorkerProcess(config, tmp_path / "worker.log"):
        cli(config, "replay", str(recording), "--wait")
        hourly = json.loads(cli(config, "report", "footfall", *window, "--by", "entrance", "--format", "json").stdout)
        quarter = cli(config, "report", "footfall", *window, "--interval", "15m", "--format", "csv").stdout
        table = cli(config, "report", "footfall", *window, "--by", "counter", "--plot", str(tmp_path / "ff.png")).stdout
    # with the worker stopped the command opens the engine itself
    again = json.loads(cli(config, "report", "footfall", *window, "--by", "entrance", "--format", "json").stdout)

    reported = {
        (row["place"], row["interval_start"][11:16]): (row["in"], row["out"]) for row in hourly if row["total"]
    }  # counters also report quiet intervals
    truth_hours = {
        (place, hour[11:16] if "T" in hour else hour): flows
        for (place, hour), flows in people_per_entrance_hour(truth, load(config)).items()
    }
    assert reported == truth_hours and len(reported) >= 8
    assert all(row["total"] == row["in"] + row["out"] and row["net"] == row["in"] - row["out"] for row in hourly)
    assert again == hourly

    quarters = list(csv.DictReader(io.StringIO(quarter)))
    assert {row["interval_start"][14:16] for row in quarters} == {"00", "15", "30", "45"}
    summed: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in quarters:
        summed[(row["place"], row["interval_start"][11:13])][0] += int(row["in"])
        summed[(row["place"], row["interval_start"][11:13])][1] += int(row["out"])
    assert {key: tuple(v) for key, v in summed.items() if any(v)} == {
        (p, h[:2]): flows for (p, h), flows in reported.items()
    }

    assert "C-S201" in table and "C-north" in table
    assert (tmp_path / "ff.png").stat().st_size > 10_000


def test_an_unknown_mall_is_refused_naming_the_option(broker, tmp_path):
    config = write_config(tmp_path, broker)
    result = cli(
        config, "report", "footfall", "--from", "2026-11-23", "--to", "2026-11-24", "--mall", "nowhere", check=False
    )
    assert result.returncode == 2 and "--mall" in result.stderr and "nowhere" in result.stderr
