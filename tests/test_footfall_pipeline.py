"""The footfall and parking agents through the real broker, worker and chdb, against simulated days' ground truth."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mallstream.privacy import Pseudonym
from mallstream.replay import wait_until_processed
from mallstream.settings import load
from mallstream.simulators.mallday import STAFF_EPC_PREFIX, FaultKnobs, GroundTruth, MallDay, record
from tests.conftest import SCALE, WorkerProcess, cli, write_config

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(300)]

DAY = MallDay(visitors=int(4000 * SCALE), staff=40, staff_badges=True, seed=11)
CLOSING = "22:00"


def footfall_config(tmp_path: Path, broker: str) -> Path:
    """The example mall with a counter and a staff badge reader at every entrance, zone and store."""
    path = write_config(tmp_path, broker)
    data = yaml.safe_load(path.read_text())
    mall = data["malls"][0]
    places = [place["id"] for kind in ("entrances", "zones", "stores") for place in mall[kind]]
    mall["people_counters"] = [{"id": f"C-{p}", "place": p, "excludes_staff": p == "S201"} for p in places]
    mall["rfid_readers"] = [{"id": f"R-{p}", "place": p} for p in places]
    mall["footfall"].update(staff_badge_prefixes=[STAFF_EPC_PREFIX], empties_at=CLOSING, allowed_lateness_s=600)
    path.write_text(yaml.safe_dump(data))
    return path


def sql(config: Path, query: str) -> list[dict]:
    return [json.loads(line) for line in cli(config, "sql", query, "--format", "json").stdout.splitlines() if line]


def replay_until_closed(config: Path, recording: Path, days: int = 1, timeout: float = 60) -> None:
    """Replay, then wait until the worker has gone quiet, closed the last intervals and reconciled the days.

    The last intervals close only once every input has been idle for a while (see SourceClock).
    """
    print(cli(config, "replay", str(recording), "--wait").stdout)
    settings = load(config)
    deadline = time.monotonic() + timeout
    while len(sql(config, f"SELECT 1 FROM {{db}}.area_days WHERE key = '{settings.malls[0].id}'")) < days:
        assert time.monotonic() < deadline, "the day was never reconciled"
        time.sleep(1)
    assert wait_until_processed(settings, timeout=timeout, progress=False)


def with_re_pushed_ticks(recording: Path) -> int:
    """Every 10th tick sent twice in a row, and 50 ticks again at the end, long after their interval closed."""
    lines = recording.read_bytes().splitlines(keepends=True)
    ticks = [line for line in lines if b'"footfall_tick"' in line]
    out = []
    for line in lines:
        out.append(line)
        if b'"footfall_tick"' in line and hash(line) % 10 == 0:
            out.append(line)
    out += ticks[len(ticks) // 2 : len(ticks) // 2 + 50]
    recording.write_bytes(b"".join(out))
    return len(out) - len(lines)


def late_parking_windows(recording: Path, lateness_s: float) -> list[tuple[int, int]]:
    """(due, arrived) in ms of each gate event the recording delivers late, found by its time going backwards."""
    newest, windows = 0, []
    for line in recording.read_bytes().splitlines():
        if b'"parking_event"' in line:
            due = int(dt.datetime.fromisoformat(json.loads(line)["ts"]).timestamp() * 1000)
            if due < newest:
                windows.append((due, due + int(lateness_s * 1000)))
            newest = max(newest, due)
    return windows


def hourly_truth(truth: GroundTruth, places: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (place, hour[11:16]): (flows["in"], flows["out"])
        for place in places
        for hour, flows in truth.visitors.get(place, {}).items()
        if flows["in"] or flows["out"]
    }


def test_visitors_dwell_conversion_and_parking_equal_the_truth_with_late_and_re_pushed_ticks(broker, tmp_path):
    config = footfall_config(tmp_path, broker)
    settings = load(config)
    mall = settings.malls[0]
    recording = tmp_path / "day.jsonl"
    late = FaultKnobs(late_event_rate=0.03, lateness_s=300)
    truth = record(settings, mall.id, DAY.__class__(**{**DAY.__dict__, "faults": late}), recording, progress=False)
    assert truth.faults["late_events"] > 0
    assert with_re_pushed_ticks(recording) > 100

    with WorkerProcess(config, tmp_path / "worker.log"):
        replay_until_closed(config, recording)
        hourly = sql(
            config,
            """
            SELECT key, formatDateTime(toTimeZone(hour, 'Asia/Shanghai'), '%H:%i') AS h,
                   sum(visitors_in) AS i, sum(visitors_out) AS o
            FROM {db}.visitors_hourly WHERE level = 'entrance' GROUP BY key, h HAVING i != 0 OR o != 0
            SETTINGS output_format_json_quote_64bit_integers = 0""",
        )
        mall_row = sql(
            config,
            """
            SELECT sum(visitors_in) AS i, sum(visitors_out) AS o, sum(staff_in) AS s, sum(transactions) AS t
            FROM {db}.visitors_daily WHERE level = 'mall'
            SETTINGS output_format_json_quote_64bit_integers = 0""",
        )[0]
        stores = sql(
            config,
            """
            SELECT key, sum(visitors_in) AS i, sum(transactions) AS t FROM {db}.visitors_daily
            WHERE level = 'store' GROUP BY key SETTINGS output_format_json_quote_64bit_integers = 0""",
        )
        days = sql(config, "SELECT key, dwell_littles_s, dwell_matched_s, residual FROM {db}.area_days")
        late_counts = sql(
            config,
            "SELECT count() AS n FROM {db}.footfall_rollups WHERE late AND "
            "(visitors_in != 0 OR visitors_out != 0 OR staff_in != 0 OR staff_out != 0)",
        )
        stays = sql(
            config,
            "SELECT plate_hash, car_park_id, toUnixTimestamp64Milli(entry) AS entry, "
            "toUnixTimestamp64Milli(exit) AS exit FROM {db}.parking_stays",
        )
        occupancy = sql(
            config,
            "SELECT toUnixTimestamp64Milli(ts) AS ts, occupancy FROM {db}.parking_occupancy ORDER BY ts, event_id",
        )

    entrances = [e.id for e in mall.entrances]
    assert {(row["key"], row["h"]): (row["i"], row["o"]) for row in hourly} == hourly_truth(truth, entrances)
    assert (mall_row["i"], mall_row["o"]) == (DAY.visitors, DAY.visitors), "visitors, not people"
    assert mall_row["s"] > DAY.staff, "staff passes were deducted"
    assert int(late_counts[0]["n"]) == 0, "ticks late by less than the allowed lateness land in their own interval"

    sales = {store: figures["sales"] for store, figures in truth.transactions.items()}
    assert mall_row["t"] == sum(sales.values())
    for row in stores:
        true_in = sum(flows["in"] for flows in truth.visitors[row["key"]].values())
        assert (row["i"], row["t"]) == (true_in, sales.get(row["key"], 0)), row["key"]

    dwell = {row["key"]: row for row in days}
    for key in [mall.id, *(s.id for s in mall.stores)]:
        assert dwell[key]["dwell_littles_s"] == pytest.approx(truth.mean_dwell_s[key], rel=0.10), key
        assert dwell[key]["dwell_matched_s"] == pytest.approx(truth.mean_dwell_s[key], rel=0.10), key

    def millis(iso: str) -> int:
        return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)

    # plates are stored as the keyed hash the worker made with the hub's key
    hashed = Pseudonym.of(settings)
    assert sorted((s["plate_hash"], s["car_park_id"], int(s["entry"]), int(s["exit"])) for s in stays) == sorted(
        (hashed(t["plate"]), t["car_park"], millis(t["entry"]), millis(t["exit"])) for t in truth.parking_stays
    )
    true_stays = [(millis(t["entry"]), millis(t["exit"])) for t in truth.parking_stays]
    assert len(occupancy) == 2 * len(true_stays)
    # occupancy follows the gate events as they arrive: while a late one is on its way it is one car off,
    # and cars passing gates in the same second leave their order open
    disordered = late_parking_windows(recording, late.lateness_s)
    events_at = Counter(int(row["ts"]) for row in occupancy)
    settled = {
        int(row["ts"]): row["occupancy"]
        for row in occupancy
        if events_at[int(row["ts"])] == 1 and not any(start <= int(row["ts"]) <= end for start, end in disordered)
    }
    assert len(settled) > len(occupancy) // 2
    assert all(count == sum(entry <= ts < exit for entry, exit in true_stays) for ts, count in settled.items())
