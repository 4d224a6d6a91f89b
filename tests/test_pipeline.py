"""The hub end to end on real parts: noida-db broker, faust worker process, chdb, the CLI."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.conftest import SCALE, cli
from tests.expected import expected_ledger

pytestmark = pytest.mark.pipeline

MALFORMED = [
    "this is not json",
    '{"type":"pos_transaction","txn_id":"bad-1"}',
    '{"type":"teleport","at":"the moon"}',
    '{"type":"pos_transaction","txn_id":"bad-2","store_id":"S101","workstation_id":"T","seq":1,'
    '"ts":"2026-11-21T10:00:00+08:00","business_day":"2026-11-21","kind":"sale","total":1.005}',
]


def ledger_figures(config) -> dict:
    rows = cli(
        config,
        "sql",
        "SELECT member_id, sumIf(delta, account = 'points'), sumIf(delta, account LIKE 'voucher:%') "
        "FROM {db}.ledger_entries GROUP BY member_id",
    ).stdout
    by_member, vouchers = {}, {}
    for member, points, voucher_cents in (line.split("\t") for line in rows.splitlines()[1:]):
        by_member[member] = int(points)
        if int(voucher_cents):
            vouchers[member] = int(voucher_cents)
    count = int(
        cli(config, "sql", "SELECT count() FROM {db}.ledger_entries WHERE account = 'points'").stdout.splitlines()[1]
    )
    rollup = cli(
        config,
        "sql",
        "SELECT store_id, sum(earned), sum(reversed), sum(entries) FROM {db}.points_daily GROUP BY store_id",
        "--format",
        "json",
    ).stdout
    earned, reversed_, entries = {}, {}, 0
    for line in rollup.splitlines():
        row = json.loads(line)
        earned[row["store_id"]] = int(row["sum(earned)"])
        reversed_[row["store_id"]] = int(row["sum(reversed)"])
        entries += int(row["sum(entries)"])
    return {
        "entries": count,
        "rollup_entries": entries,
        "points_by_member": by_member,
        "vouchers_by_member": vouchers,
        "earned_by_store": earned,
        "reversed_by_store": reversed_,
    }


def assert_matches(figures: dict, expected: dict) -> None:
    assert figures["rollup_entries"] == figures["entries"] > 0  # the roll-up saw every points entry once
    assert figures["points_by_member"] == expected["points_by_member"]
    assert figures["vouchers_by_member"] == expected["vouchers_by_member"]
    assert {k: v for k, v in figures["earned_by_store"].items() if v} == expected["earned_by_store"]
    assert {k: v for k, v in figures["reversed_by_store"].items() if v} == expected["reversed_by_store"]


def make_day(config, tmp_path, count: int, member_share: str = "1.0"):
    path = tmp_path / "day.jsonl"
    cli(config, "simulate", "pos", "--count", str(count), "--member-share", member_share, "-o", str(path))
    return path


def test_replay_once_per_transaction_and_replay_again_changes_nothing(hub_config, worker, tmp_path):
    count = int(2_500 * SCALE)
    day = make_day(hub_config, tmp_path, count)
    lines = day.read_text().splitlines()
    day.write_text("\n".join(lines[:100] + MALFORMED + lines[100:]) + "\n")
    expected = expected_ledger(day)
    assert expected["receipts"] == count  # every receipt has a member here

    worker.start()
    # make scenario replays 100,000 member receipts here, which took longer than 600 s (2026-12-05)
    wait = ("--timeout", str(max(900, count / 100)))
    result = cli(hub_config, "replay", str(day), "--wait", *wait, timeout=max(600, count / 80))
    assert f"sent {count + 2} events" in result.stdout and "2 malformed lines" in result.stdout
    first = ledger_figures(hub_config)
    assert_matches(first, expected)
    campaigns = cli(
        hub_config,
        "sql",
        "SELECT campaign_id, sum(vouchers_issued), sum(triggering_spend_cents) "
        "FROM {db}.campaign_participation GROUP BY campaign_id",
    ).stdout
    by_campaign = {c: (int(n), int(spend)) for c, n, spend in (line.split("\t") for line in campaigns.splitlines()[1:])}
    assert by_campaign == {
        c: (n, expected["triggering_spend_by_campaign"][c]) for c, n in expected["vouchers_issued_by_campaign"].items()
    }
    dead = cli(hub_config, "sql", "SELECT reason FROM {db}.dead_letters ORDER BY reason").stdout
    assert len(dead.splitlines()) == 1 + len(MALFORMED)
    assert "at most 2 decimals" in dead and "missing required field" in dead and "teleport" in dead

    cli(hub_config, "replay", str(day), "--wait", *wait, timeout=max(600, count / 80))
    assert ledger_figures(hub_config) == first
    assert len(cli(hub_config, "sql", "SELECT * FROM {db}.dead_letters").stdout.splitlines()) == 1 + len(MALFORMED)

    member_id, points = next(iter(expected["points_by_member"].items()))
    member = json.loads(cli(hub_config, "member", member_id).stdout)
    assert member["balances"]["points"] == points


def test_anonymous_sales_earn_nothing_and_returns_without_card_find_their_member(hub_config, worker, tmp_path):
    day = make_day(hub_config, tmp_path, int(2_000 * SCALE), member_share="0.6")
    expected = expected_ledger(day)
    worker.start()
    cli(hub_config, "replay", str(day), "--wait")
    assert_matches(ledger_figures(hub_config), expected)
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}/stats/", headers=worker.headers)
    stats = json.loads(urllib.request.urlopen(request).read())
    assert stats["counters"]["receipts_anonymous"] > 0
    # each receipt, re-keyed by member, passed both lanes: the routes lane (VIP spend, footfall) and the sinks lane
    lanes = {group.rsplit("-", 1)[1]: figures for group, figures in stats["lanes"].items()}
    assert lanes["sinks"]["records"] > expected["receipts"] and lanes["routes"]["records"] >= expected["receipts"]


def test_sql_opens_the_engine_itself_when_no_worker_runs(hub_config, worker, tmp_path):
    day = make_day(hub_config, tmp_path, 50)
    worker.start()
    cli(hub_config, "replay", str(day), "--wait")
    worker.stop()
    assert cli(hub_config, "sql", "SELECT uniqExact(txn_id) FROM {db}.ledger_entries").stdout.splitlines()[1] == "50"
    failed = cli(hub_config, "sql", "SELECT nonsense FROM nowhere", check=False)
    assert failed.returncode == 1 and "nowhere" in failed.stderr


def test_receipts_keyed_wrongly_by_a_till_are_rekeyed_and_still_find_their_member(hub_config, worker, tmp_path):
    from kafka import KafkaProducer

    from mallstream import settings as config
    from mallstream.replay import wait_until_processed

    sale = {
        "type": "pos_transaction",
        "txn_id": "k-sale",
        "store_id": "S201",
        "workstation_id": "T",
        "seq": 1,
        "ts": "2026-11-21T10:00:00+08:00",
        "business_day": "2026-11-21",
        "kind": "sale",
        "total": "88.80",
        "member_id": "M-rekey",
    }
    refund = {
        **sale,
        "txn_id": "k-return",
        "kind": "return",
        "total": "20.00",
        "member_id": None,
        "original_txn_id": "k-sale",
        "seq": 2,
    }
    worker.start()
    settings = config.load(hub_config)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    # a till keying by itself, and later (a return comes after its sale) one not keying at all
    for event, key in ((sale, b"till-7"), (refund, None)):
        producer.send("pos.transactions", key=key, value=json.dumps(event).encode()).get(timeout=10)
        assert wait_until_processed(settings, timeout=120, progress=False)
    producer.close()
    rows = cli(
        hub_config,
        "sql",
        "SELECT txn_id, member_id, delta FROM {db}.ledger_entries WHERE account = 'points' ORDER BY txn_id",
    ).stdout
    assert rows.splitlines()[1:] == ["k-return\tM-rekey\t-20", "k-sale\tM-rekey\t88"]


def test_garbage_on_every_input_topic_is_dead_lettered_once_with_its_reason_and_the_worker_goes_on(
    hub_config, worker, tmp_path
):
    """Bytes no till or device bridge would send, straight onto the topics: the lanes and agents that read each
    topic (an input is read by several) dead-letter it, the sink stores that once, and a good receipt after still counts."""
    from kafka import KafkaProducer

    from mallstream import settings as config
    from mallstream.replay import wait_until_processed
    from mallstream.streams import topics

    worker.start()
    settings = config.load(hub_config)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    garbage = {spec.name: f'{{"type":"{kind}","oops":true}}'.encode() for kind, spec in topics.INPUT_TOPICS.items()}
    garbage[topics.RFID_READS.name] = b"\xff\xfe not even text"
    for topic, payload in garbage.items():
        producer.send(topic, key=b"fuzz", value=payload).get(timeout=10)
    day = make_day(hub_config, tmp_path, 5)
    producer.close()
    cli(hub_config, "replay", str(day))
    assert wait_until_processed(settings, timeout=120, progress=False)
    rows = cli(
        hub_config,
        "sql",
        "SELECT splitByChar(':', source)[1] AS topic, reason FROM {db}.dead_letters",
        "--format",
        "json",
    ).stdout.splitlines()
    letters = [json.loads(row) for row in rows]
    assert sorted(letter["topic"] for letter in letters) == sorted(garbage)
    assert all(letter["reason"] for letter in letters)
    assert cli(hub_config, "sql", "SELECT uniqExact(txn_id) FROM {db}.ledger_entries").stdout.splitlines()[1] == "5"
