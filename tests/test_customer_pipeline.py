"""Customer agents in a real worker: a year of simulated purchases replayed through the broker.

A known fifth of the members stops buying on day 180. The churn signals the worker sends
(to the alerts table and to ``customers.signals``) are scored against that truth; the member
view, the customer report and the churn fit are checked against the pure core run on the
same receipts.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pytest
from kafka import KafkaConsumer

from mallstream.churn_fit import FittedParams, fit_from_histories, load_params, save_params
from mallstream.replay import wait_until_processed
from mallstream.settings import CustomerRules, load
from mallstream.simulators.purchases import CHINA, PurchaseHistories, PurchaseSimulation, receipts, simulate
from mallstream.streams.core.bgnbd import BgNbdParams
from mallstream.streams.core.customers import insight
from mallstream.streams.core.pyramid import exact_classes
from mallstream.streams.records import encode
from tests.conftest import SCALE, WorkerProcess, cli, running_broker, write_config
from tests.support.churn import Replay, replay, signal_quality

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(300)]

SPEC = PurchaseSimulation(members=int(600 * SCALE), days=365, dropper_share=0.2, drop_day=180, drop_factor=0.0, seed=5)
TICK_EVERY_DAYS = 7  # as the core's measured replay
#: The replay compresses a year into about a minute: re-keying receipts from the four partitions of
#: pos.transactions onto pos.by_member then reorders them by up to 40 days of event time (measured: 38).
TICK_LATENESS_HOURS = 40 * 24
PROFILE = {"age_band": ("18-25", "26-35", "36-50", "51+"), "gender": ("f", "m"), "region": ("Xuhui", "Minhang")}


@dataclass(frozen=True)
class Signal:
    member_id: str
    kind: str
    ts: dt.datetime
    message: str


@dataclass(frozen=True)
class ChurnRun:
    config: Path
    worker: WorkerProcess
    histories: PurchaseHistories
    recording: Path
    core: Replay
    params: BgNbdParams
    alerts: list[Signal]
    on_topic: list[dict]
    replay_seconds: float
    receipts: int
    counters: dict[str, int]


def write_members(path: Path, members: int) -> None:
    """Master data with static attributes, so snapshots carry what customer composition is cut by."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("member_id", "tier", *PROFILE))
        for i in range(members):
            writer.writerow(
                (
                    f"M{i:07d}",
                    "gold" if i % 10 == 0 else "silver",
                    *(values[i % len(values)] for values in PROFILE.values()),
                )
            )


def read_signals_topic(bootstrap: str) -> list[dict]:
    consumer = KafkaConsumer(
        "customers.signals",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        group_id=None,
    )
    try:
        return [json.loads(message.value) for message in consumer]
    finally:
        consumer.close()


def sql_rows(config: Path, query: str) -> list[dict]:
    return [json.loads(line) for line in cli(config, "sql", query, "--format", "json").stdout.splitlines()]


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory) -> ChurnRun:
    tmp_path = tmp_path_factory.mktemp("churn")
    calibration = simulate(PurchaseSimulation(members=20_000, days=SPEC.drop_day, seed=99))
    params = fit_from_histories(calibration.purchase_days, SPEC.drop_day)
    params_file = tmp_path / "bgnbd.json"
    save_params(params_file, FittedParams(params, None, 20_000, dt.datetime.now(dt.UTC)))
    histories = simulate(SPEC)
    recording = tmp_path / "purchases.jsonl"
    txns = [msgspec.structs.replace(txn, store_id="S201") for txn in receipts(histories)]
    recording.write_bytes(b"".join(encode(txn) + b"\n" for txn in txns))
    write_members(tmp_path / "members.csv", SPEC.members)
    with running_broker(tmp_path / "broker") as bootstrap:
        config = write_config(
            tmp_path,
            bootstrap,
            members={"source": str(tmp_path / "members.csv")},
            customers={
                "params_file": str(params_file),
                "tick_every_days": TICK_EVERY_DAYS,
                "timer_seconds": 0.2,
                "tick_lateness_hours": TICK_LATENESS_HOURS,
                "pyramid_seconds": 1.0,
            },
        )
        settings = load(config)
        with WorkerProcess(config, tmp_path / "worker.log") as worker:
            started = time.monotonic()
            cli(config, "replay", str(recording), "--wait")
            replay_seconds = time.monotonic() - started
            time.sleep(3)  # the last ticks, and a pyramid recompute after the last receipt
            assert wait_until_processed(settings, timeout=120, progress=False)
            alerts = [
                Signal(
                    row["member_id"],
                    row["kind"],
                    dt.datetime.fromisoformat(row["ts"]).replace(tzinfo=dt.UTC).astimezone(CHINA),
                    row["message"],
                )
                for row in sql_rows(
                    config,
                    """
                SELECT member_id, kind, ts, message FROM {db}.alerts
                WHERE kind IN ('churn_risk', 'churned', 'recovered') ORDER BY ts""",
                )
            ]
            request = urllib.request.Request(f"http://127.0.0.1:{worker.port}/stats/", headers=worker.headers)
            with urllib.request.urlopen(request, timeout=30) as answer:
                counters = json.loads(answer.read())["counters"]
            yield ChurnRun(
                config,
                worker,
                histories,
                recording,
                replay(histories, CustomerRules(), params, TICK_EVERY_DAYS),
                params,
                alerts,
                read_signals_topic(bootstrap),
                replay_seconds,
                len(txns),
                counters,
            )


def test_churn_signals_find_the_members_who_dropped_and_reach_both_topics(churn_run):
    quality = signal_quality(churn_run.histories, churn_run.alerts, detect_within_days=120)
    print(
        f"\n{churn_run.receipts} receipts replayed and processed in {churn_run.replay_seconds:.1f} s "
        f"({churn_run.receipts / churn_run.replay_seconds:,.0f} receipts/s end to end); {quality}"
    )
    assert quality.detectable > 40 * SCALE
    assert quality.recall >= 0.8 and quality.precision >= 0.7, quality
    # ticks fall at the same day ends as in the core's own replay, whatever the replay speed: same signals
    # the core's own replay ticks every member at every 7th day end; the stream waits out late receipts
    # (TICK_LATENESS_HOURS) and skips members who bought since, so it never flags more steady members
    core = signal_quality(churn_run.histories, churn_run.core.signals, detect_within_days=120)
    assert quality.steady_flagged <= core.steady_flagged, (quality, core)
    assert sorted((s["member_id"], s["kind"]) for s in churn_run.on_topic) == sorted(
        (s.member_id, s.kind) for s in churn_run.alerts
    )


def test_members_are_evaluated_when_they_buy_or_are_due_not_every_member_at_every_tick(churn_run):
    """A year of 7-day ticks over every member would be 52 evaluations a member; due days make it a few."""
    counters = churn_run.counters
    print(
        f"\n{counters['customer_evaluations']} evaluations for {counters['customer_receipts']} receipts and "
        f"{len(churn_run.alerts)} signals"
    )
    assert counters["customer_receipts"] > 0
    assert counters["customer_evaluations"] <= 2 * counters["customer_receipts"] + len(churn_run.alerts)


def test_never_two_signals_for_one_change_of_state(churn_run):
    kinds: defaultdict[str, list[str]] = defaultdict(list)
    for signal in churn_run.alerts:
        kinds[signal.member_id].append(signal.kind)
    for member, sequence in kinds.items():
        assert sequence[0] != "recovered", member
        assert all(a != b for a, b in itertools.pairwise(sequence)), (member, sequence)
    assert len(churn_run.alerts) == len({(s.member_id, s.kind, s.ts) for s in churn_run.alerts})


def test_member_view_shows_the_customer_as_of_a_date_and_refuses_one_before_the_last_receipt(churn_run):
    core = churn_run.core.states
    member = max(core, key=lambda m: core[m].repeat_days)
    last = dt.date.fromordinal(core[member].last_day)
    as_of = last + dt.timedelta(days=30)
    shown = json.loads(cli(churn_run.config, "member", member, "--as-of", as_of.isoformat()).stdout)
    expected = insight(
        core[member], dt.datetime.combine(as_of, dt.time(23, 59, 59), CHINA), CustomerRules(), churn_run.params
    )
    assert shown["balances"] and shown["value_class"] in "ABCD"
    assert shown["p_alive"] == pytest.approx(expected.p_alive, abs=1e-9)
    assert (shown["lifecycle_stage"], shown["rfm_segment"]) == (expected.lifecycle_stage, expected.rfm_segment)
    assert shown["preferences"] == expected.preferences and len(shown["preferences"]["brands"]) == 3

    refused = cli(churn_run.config, "member", member, "--as-of", (last - dt.timedelta(days=1)).isoformat(), check=False)
    assert refused.returncode == 1 and f"before member {member}'s last receipt" in refused.stderr


def test_report_customers_prints_the_pyramid_and_lifecycle_as_computed_exactly(churn_run, tmp_path):
    plot = tmp_path / "customers.png"
    printed = cli(churn_run.config, "report", "customers", "--plot", str(plot)).stdout
    assert "spend share" in printed and "declining" in printed and plot.stat().st_size > 10_000
    snapshots = sql_rows(
        churn_run.config,
        "SELECT member_id, value_class, spend_cents, lifecycle_stage FROM {db}.customer_snapshots FINAL",
    )
    core = churn_run.core.states
    assert {row["member_id"] for row in snapshots} == set(core)
    members = sorted(core)
    exact = dict(zip(members, exact_classes([core[m].spend_cents for m in members]), strict=False))
    agree = np.mean([row["value_class"] == exact[row["member_id"]] for row in snapshots])
    assert agree >= 0.99, Counter((row["value_class"], exact[row["member_id"]]) for row in snapshots)
    counts = Counter(row["value_class"] for row in snapshots)
    assert counts["A"] == pytest.approx(0.01 * len(core), abs=2) and counts["D"] > 0.75 * len(core)
    assert all(f"{count:,}" in printed for count in counts.values())
    composition = sql_rows(
        churn_run.config,
        "SELECT region, sum(members) AS members FROM {db}.customer_composition "
        "GROUP BY region SETTINGS output_format_json_quote_64bit_integers = 0",
    )
    assert {row["region"] for row in composition} == set(PROFILE["region"])
    assert sum(row["members"] for row in composition) == len(core)


def test_churn_fit_from_the_receipts_and_from_clickhouse_agrees_with_the_core_fit(churn_run, tmp_path):
    reference = fit_from_histories(churn_run.histories.purchase_days, SPEC.days)
    for source in (["--input", str(churn_run.recording)], ["--from-clickhouse"]):
        out = tmp_path / "params.json"
        printed = cli(churn_run.config, "churn", "fit", *source, "--out", str(out)).stdout
        assert "fitted on" in printed and " s;" in printed
        fitted = load_params(out)
        for name in ("r", "alpha", "a", "b"):
            assert getattr(fitted.params, name) == pytest.approx(getattr(reference, name), rel=1e-4), (source, name)
