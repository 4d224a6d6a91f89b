"""Loyalty in the worker on real parts: till authorisations, the service desk, schedules, signals, notifications.

One worker (noida-db broker, chdb), a local webhook (stdlib http.server) standing in for
the SMS platform, and member master data with a birthday.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from mallstream import settings as config
from mallstream.replay import wait_until_processed
from mallstream.till_client import authorise
from mallstream.till_client import wait_until_serving as until_serving
from tests.conftest import REPO, WorkerProcess, cli, free_port, write_config

pytestmark = pytest.mark.pipeline

OPS_RULES = REPO / "tests" / "rules" / "ops.yaml"


class Webhook:
    """A local HTTP endpoint that refuses its first call (so retries are exercised) and keeps the rest."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.refused = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.refused == 0:
                    hook.refused += 1
                    self.send_response(503)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [n for n in list(self.received) if predicate(n)]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no such notification; received {self.received}")


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def desk(tmp_path: Path, broker: str, webhook: Webhook) -> Iterator[tuple[Path, WorkerProcess]]:
    members = tmp_path / "members.csv"
    members.write_text("member_id,tier,name,epc,birthday\nM-desk,standard,Desk,,1990-12-02\nM-till,standard,Till,,\n")
    hub_config = write_config(
        tmp_path,
        broker,
        rules={"file": str(OPS_RULES)},
        members={"source": str(members)},
        notifications={"webhook_url": webhook.url},
    )
    worker = WorkerProcess(hub_config, tmp_path / "worker.log").start()
    wait_until_serving(worker)
    yield hub_config, worker
    worker.stop()


def wait_until_serving(worker: WorkerProcess) -> None:
    until_serving(worker.port, worker.headers, timeout=40)


def desk_op(hub_config: Path, action: str, member: str, op_id: str, *extra: str, check: bool = True) -> dict:
    result = cli(
        hub_config,
        "loyalty",
        action,
        member,
        *extra,
        "--op-id",
        op_id,
        "--by",
        "clerk-7",
        "--why",
        f"ticket {op_id}",
        check=check,
    )
    return json.loads(result.stdout)


def member(hub_config: Path, member_id: str) -> dict:
    return json.loads(cli(hub_config, "member", member_id).stdout)


def run_schedule(worker: WorkerProcess, at: str) -> None:
    """What `mallstream loyalty run-schedule --at` does, without starting a process."""
    url = f"http://127.0.0.1:{worker.port}/schedule/?{urllib.parse.urlencode({'at': at})}"
    urllib.request.urlopen(
        urllib.request.Request(url, data=b"", method="POST", headers=worker.headers), timeout=30
    ).read()


def send_receipts(hub_config: Path, tmp_path: Path, *receipts: dict) -> None:
    path = tmp_path / f"receipts-{time.time_ns()}.jsonl"
    path.write_text("".join(json.dumps({"type": "pos_transaction", **r}) + "\n" for r in receipts))
    cli(hub_config, "replay", str(path), "--wait")


def test_desk_operations_carry_who_and_why_once_per_op_id_and_notify_the_member(desk, webhook):
    hub_config, _ = desk
    added = desk_op(hub_config, "adjust", "M-desk", "T-1", "--points", "12000")
    assert [(e["account"], e["delta"], e["by"], e["reason"]) for e in added["entries"]] == [
        ("points", 12000, "clerk-7", "ticket T-1")
    ]
    again = desk_op(hub_config, "adjust", "M-desk", "T-1", "--points", "12000")
    assert again["replayed"] and member(hub_config, "M-desk")["balances"]["points"] == 12000

    rebate = desk_op(hub_config, "rebate", "M-desk", "T-2", "--strategy", "desk-5000", "--points", "12000")
    assert sorted((e["cause"], e["delta"]) for e in rebate["entries"]) == [("points_spent", -10000), ("rebate", 10000)]
    taken = desk_op(hub_config, "adjust", "M-desk", "T-3", "--points", "-5000", check=False)
    assert taken["rejected"] == ["5000 points cannot be taken from 2000"]
    frozen = desk_op(hub_config, "status", "M-desk", "T-4", "frozen")
    assert frozen["entries"][0]["cause"] == "status_changed"
    card = member(hub_config, "M-desk")
    assert (card["status"], card["balances"], card["birthday"]) == (
        "frozen",
        {"points": 2000, "stored_value_cents": 10000},
        "1990-12-02",
    )

    rows = cli(
        hub_config,
        "sql",
        "SELECT txn_id, cause, delta, by, reason FROM {db}.ledger_entries "
        "WHERE member_id = 'M-desk' AND account != '' ORDER BY txn_id, cause",
    ).stdout
    assert rows.splitlines()[1:] == [
        "T-1\tpoints_adjusted\t12000\tclerk-7\tticket T-1",
        "T-2\tpoints_spent\t-10000\tclerk-7\tticket T-2",
        "T-2\trebate\t10000\tclerk-7\tticket T-2",
    ]
    changed = webhook.wait_for(lambda n: n["kind"] == "points_changed" and n["cause"] == "T-2")
    assert (changed[0]["points_delta"], changed[0]["points_balance"]) == (-10000, 2000)
    assert webhook.refused == 1  # the first call failed and was retried


def test_two_tills_at_once_never_overdraw_and_the_posted_receipt_settles_the_hold(desk, tmp_path):
    hub_config, worker = desk
    desk_op(hub_config, "adjust", "M-till", "S-1", "--points", "10000")
    desk_op(hub_config, "rebate", "M-till", "S-2", "--strategy", "desk-5000", "--points", "10000")  # 100.00 stored

    barrier = threading.Barrier(2)

    def till(number: int) -> dict:
        barrier.wait()
        return authorise(
            worker.port, worker.headers, member_id="M-till", txn_id=f"till-{number}-sale", amount_cents=6000
        )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(till, (1, 2)))
    assert sorted(a["approved"] for a in answers) == [False, True]
    refused = next(a for a in answers if not a["approved"])
    assert refused["reason"] == "insufficient balance: 4000 cents available"
    winner = next(a for a in answers if a["approved"])["hold_id"]
    assert authorise(worker.port, worker.headers, member_id="M-till", txn_id=winner, amount_cents=6000)[
        "approved"
    ]  # asked again

    send_receipts(
        hub_config,
        tmp_path,
        {
            "txn_id": winner,
            "store_id": "S101",
            "workstation_id": "T1",
            "seq": 1,
            "ts": "2026-11-21T10:00:00+08:00",
            "business_day": "2026-11-21",
            "kind": "sale",
            "total": "60.00",
            "member_id": "M-till",
            "tenders": [{"type": "stored_value", "amount": "60.00"}],
        },
    )
    card = member(hub_config, "M-till")
    assert card["balances"]["stored_value_cents"] == 4000 and card["holds"] == []  # settled
    assert not authorise(worker.port, worker.headers, member_id="M-till", txn_id="till-3", amount_cents=4001)[
        "approved"
    ]

    # fifty 1-cent holds in a row all count against the balance (latency figures: python -m benchmarks.bench_loyalty)
    for number in range(50):
        hold = authorise(worker.port, worker.headers, member_id="M-till", txn_id=f"hold-{number}", amount_cents=1)
        assert hold["approved"], hold
    assert len(member(hub_config, "M-till")["holds"]) == 50
    assert not authorise(worker.port, worker.headers, member_id="M-till", txn_id="till-4", amount_cents=3951)[
        "approved"
    ]
    assert authorise(worker.port, worker.headers, member_id="M-till", txn_id="till-5", amount_cents=3950)["approved"]


def test_schedule_gives_birthday_gift_and_expiry_reminders_and_churn_signals_grant_retention_offers(desk, webhook):
    from kafka import KafkaProducer

    hub_config, worker = desk
    desk_op(hub_config, "adjust", "M-desk", "B-1", "--points", "10")
    settings = config.load(hub_config)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    signal = {
        "type": "alert",
        "alert_id": "M-desk:churn_risk:1",
        "mall_id": "mall-1",
        "kind": "churn_risk",
        "ts": "2026-11-20T12:00:00+08:00",
        "member_id": "M-desk",
        "message": "P(alive) 0.31",
    }
    for _ in range(2):  # a signal delivered twice grants once
        producer.send("customers.signals", key=b"M-desk", value=json.dumps(signal).encode()).get(timeout=10)
    producer.close()
    assert wait_until_processed(settings, timeout=60, progress=False)

    # Monday of the birthday week (2 Dec), twice: one gift, one greeting
    cli(hub_config, "loyalty", "run-schedule", "--at", "2026-11-30T00:00:00+08:00")
    run_schedule(worker, "2026-11-30T00:00:00+08:00")
    assert wait_until_processed(settings, timeout=60, progress=False)
    card = member(hub_config, "M-desk")
    assert card["balances"]["points"] == 10 + 100 + 200
    [voucher] = card["vouchers"]
    assert (voucher["campaign_id"], voucher["remaining_cents"]) == ("welcome-back-50", 5000)

    run_schedule(worker, "2026-12-05T00:00:00+08:00")  # after the voucher ended
    assert wait_until_processed(settings, timeout=60, progress=False)
    assert member(hub_config, "M-desk")["vouchers"][0]["remaining_cents"] == 0
    rows = cli(
        hub_config,
        "sql",
        "SELECT cause, rule_id, delta, by FROM {db}.ledger_entries "
        "WHERE member_id = 'M-desk' AND txn_id != 'B-1' ORDER BY ts, cause",
    ).stdout
    assert sorted(rows.splitlines()[1:]) == sorted(
        [
            "points_earned\tretention-offer\t100\tcustomers.signals",
            "voucher_issued\twelcome-back-50\t5000\tcustomers.signals",
            "points_earned\tbirthday-gift\t200\t",
            "voucher_expired\twelcome-back-50\t-5000\t",
        ]
    )
    kinds = [n["kind"] for n in webhook.wait_for(lambda n: n["kind"] == "birthday")]
    webhook.wait_for(lambda n: n["kind"] == "voucher_expiring" and n["voucher_id"] == voucher["voucher_id"])
    webhook.wait_for(lambda n: n["kind"] == "voucher_issued" and n["amount_cents"] == 5000)
    by_kind = [n["kind"] for n in webhook.received]
    assert by_kind.count("birthday") == 1 == by_kind.count("voucher_expiring") == len(kinds)


def test_rule_edit_mid_replay_versions_the_entries_and_a_broken_edit_keeps_the_old_rules(tmp_path, broker):
    from tests.test_pipeline import make_day

    rules = tmp_path / "rules.yaml"
    rules.write_text((REPO / "tests" / "rules" / "day.yaml").read_text())
    hub_config = write_config(tmp_path, broker, rules={"file": str(rules)})
    day = make_day(hub_config, tmp_path, 300)
    lines = day.read_text().splitlines(keepends=True)
    parts = [tmp_path / f"part-{i}.jsonl" for i in range(3)]
    for i, part in enumerate(parts):
        part.write_text("".join(lines[i * 100 : (i + 1) * 100]))
    with WorkerProcess(hub_config, tmp_path / "worker.log"):
        cli(hub_config, "replay", str(parts[0]), "--wait")
        rules.write_text(rules.read_text().replace("rate: 1\n", "rate: 2\n"))
        cli(hub_config, "replay", str(parts[1]), "--wait")
        rules.write_text(rules.read_text() + "\nearning: {rate: -3}\n")  # refused: a negative rate
        cli(hub_config, "replay", str(parts[2]), "--wait")
        found = cli(
            hub_config,
            "sql",
            "SELECT txn_id, rule_version, delta FROM {db}.ledger_entries "
            "WHERE cause = 'points_earned' AND rule_id = 'earn-base'",
        ).stdout
    version_of = {}
    for txn_id, version, _delta in (line.split("\t") for line in found.splitlines()[1:]):
        version_of[txn_id] = version.split("-")[0]
    sales = [json.loads(line) for line in lines]
    for i, expected in enumerate(("1", "2", "2")):
        part_sales = [s["txn_id"] for s in sales[i * 100 : (i + 1) * 100] if s["txn_id"] in version_of]
        assert part_sales and {version_of[t] for t in part_sales} == {expected}, f"part {i}"
    assert "rule file edit refused, version 2-" in (tmp_path / "worker.log").read_text()


def test_member_360_from_the_worker_that_does_not_own_the_member(tmp_path, broker):
    from tests.test_pipeline import make_day

    first = write_config(tmp_path, broker)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    # its own web port, state and ClickHouse directory; the hub's keys
    shared = yaml.safe_load(first.read_text())
    second = write_config(second_dir, broker, auth=shared["auth"], privacy=shared["privacy"])
    day = make_day(first, tmp_path, 400)
    members = sorted({json.loads(line)["member_id"] for line in day.read_text().splitlines()} - {None})[:12]
    with WorkerProcess(first, tmp_path / "w1.log") as one, WorkerProcess(second, second_dir / "w2.log") as two:
        wait_until_serving(one)
        wait_until_serving(two)
        cli(first, "replay", str(day), "--wait")
        answers = {}
        for port in (one.port, two.port):
            for member_id in members:
                url = urllib.request.Request(f"http://127.0.0.1:{port}/member/{member_id}/", headers=one.headers)
                answers.setdefault(member_id, []).append(json.loads(urllib.request.urlopen(url, timeout=30).read()))
        stats = urllib.request.Request(f"http://127.0.0.1:{one.port}/stats/", headers=one.headers)
        owned = json.loads(urllib.request.urlopen(stats).read())["counters"]
    assert 0 < owned.get("receipts_applied", 0) < 400  # each worker applied some of the receipts
    for member_id, (from_one, from_two) in answers.items():
        assert from_one["member_id"] == member_id and from_one["balances"] == from_two["balances"]
        assert from_one["balances"]["points"] > 0
