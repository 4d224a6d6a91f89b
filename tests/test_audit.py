"""The audit log on a real worker and broker: every manual operation, schedule run by hand and rule-file change
is recorded with who, what, when and why, on the ``audit`` topic and in ClickHouse ``audit_log``."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from mallstream.auth import KeyStore
from mallstream.replay import wait_until_processed
from mallstream.settings import load
from tests.conftest import REPO, WorkerProcess, cli, write_config
from tests.test_gateway import consume
from tests.test_loyalty_ops import desk_op, wait_until_serving

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(240)]

OPS_RULES = REPO / "tests" / "rules" / "ops.yaml"


def audit_rows(config: Path) -> list[dict]:
    out = cli(
        config,
        "sql",
        "SELECT audit_id, kind, who, actor, what, why, outcome, member_id, subject, ts "
        "FROM {db}.audit_log ORDER BY ts, audit_id",
        "--format",
        "json",
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line]


def until_audited(config: Path, predicate, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = audit_rows(config)
        if predicate(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def test_operations_schedule_runs_and_rule_changes_are_audited_once_with_who_what_when_why(tmp_path, broker):
    rules = tmp_path / "rules.yaml"
    rules.write_text(OPS_RULES.read_text() + "\nchange: {by: alice, why: opening rules for the desk}\n")
    members = tmp_path / "members.csv"
    members.write_text("member_id,tier,name,epc\nM-desk,standard,Desk,\n")
    config = write_config(
        tmp_path, broker, rules={"file": str(rules), "schedule_seconds": 1}, members={"source": str(members)}
    )
    settings = load(config)
    supervisor = KeyStore(settings.auth.keys_path()).create("supervisor-lin", "supervisor")[1]
    started = dt.datetime.now(dt.UTC)
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_until_serving(worker)
        desk_op(config, "adjust", "M-desk", "T-1", "--points", "12000")  # the command: the local key
        desk_op(config, "adjust", "M-desk", "T-1", "--points", "12000")  # asked again: recorded once
        desk_op(config, "adjust", "M-desk", "T-2", "--points", "-50000", check=False)  # refused by the rules
        query = urllib.parse.urlencode(
            {
                "member_id": "M-desk",
                "op_id": "T-3",
                "action": "rebate",
                "by": "clerk-9",
                "why": "member asked, call back on 13800138000",
                "points": "10000",
                "strategy_id": "desk-5000",
            }
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}/operations/?{query}",
            data=b"",
            method="POST",
            headers={"Authorization": f"Bearer {supervisor}"},
        )
        assert json.loads(urllib.request.urlopen(request, timeout=30).read())["rejected"] == []
        schedule = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}/schedule/?at=2026-12-31T00%3A00%3A00%2B08%3A00&why=year-end+run",
            data=b"",
            method="POST",
            headers={"Authorization": f"Bearer {supervisor}"},
        )
        urllib.request.urlopen(schedule, timeout=30).read()

        first = until_audited(config, lambda rows: any(r["kind"] == "rules_changed" for r in rows))
        rules.write_text(
            rules.read_text()
            .replace("opening rules for the desk", "more points per spend")
            .replace("alice", "bob")
            .replace("rate: 1\n", "rate: 2\n")
        )
        until_audited(config, lambda rows: any(r["who"] == "bob" for r in rows))
        rules.write_text(rules.read_text() + "\nearning: {rate: -3}\n")  # refused: a negative rate
        until_audited(config, lambda rows: any(r["kind"] == "rules_refused" for r in rows))
        assert wait_until_processed(settings, timeout=60, progress=False)
        rows = audit_rows(config)

    by_id = {row["audit_id"]: row for row in rows}
    local = f"local@{__import__('socket').gethostname()}"
    assert len(by_id) == len(rows)  # each recorded once, though every operation and rule check repeats
    operations = [
        (r["subject"], r["who"], r["actor"], r["what"], r["why"], r["outcome"], r["member_id"])
        for r in rows
        if r["kind"] == "manual_operation"
    ]
    assert sorted(operations) == [
        ("T-1", "clerk-7", local, "adjust points by +12000", "ticket T-1", "applied", "M-desk"),
        (
            "T-2",
            "clerk-7",
            local,
            "adjust points by -50000",
            "ticket T-2",
            "rejected: 50000 points cannot be taken from 12000",
            "M-desk",
        ),
        (
            "T-3",
            "clerk-9",
            "supervisor-lin",
            "manual rebate of 10000 points by desk-5000",
            "member asked, call back on *******8000",
            "applied",
            "M-desk",
        ),  # a phone number is masked
    ]
    [run] = [r for r in rows if r["kind"] == "schedule_run"]
    assert (run["who"], run["actor"], run["why"]) == ("supervisor-lin", "supervisor-lin", "year-end run")
    assert "2026-12-31T00:00:00+08:00" in run["what"]
    changes = [(r["who"], r["why"], r["outcome"]) for r in rows if r["kind"] == "rules_changed"]
    assert changes == [("alice", "opening rules for the desk", "applied"), ("bob", "more points per spend", "applied")]
    assert "replacing 1-" in next(r for r in rows if r["who"] == "bob")["what"]
    [refused] = [r for r in rows if r["kind"] == "rules_refused"]
    assert "earning.rate" in refused["outcome"] and "stays in force" in refused["what"]
    assert all(
        dt.datetime.fromisoformat(r["ts"]).replace(tzinfo=dt.UTC) >= started - dt.timedelta(minutes=1) for r in rows
    )
    assert first  # the rules in force at start were recorded before anyone edited them

    on_topic = {json.loads(record.value)["audit_id"] for record in consume(broker, "audit", len(by_id))}
    assert on_topic == set(by_id)
