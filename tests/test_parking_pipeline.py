"""Parking settled at the exit gate, through the real broker, worker and chdb.

Members' cars are known by the plates in member master data. A member whose receipts that
business day reach the free-parking threshold leaves free, with a ledger entry naming the
parking rule; one under it pays the fee table, from points when the rules say so and the card
covers it, else cash; anyone else's stay is priced by the table at the gate. A settlement
delivered again changes nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from mallstream.privacy import Pseudonym
from mallstream.replay import wait_until_processed
from mallstream.settings import load
from tests.conftest import TEST_RULES, WorkerProcess, cli, write_config

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(300)]

PARKING = """
parking:
  id: parking-2026
  fee_table: [{up_to_minutes: 30, fee: 0}, {up_to_minutes: 120, fee: 10}]
  beyond_every_minutes: 60
  beyond_fee: 5
  free_when_day_spend: 200
  points_per_yuan: 100
  gate_pays_from: [points]
"""
MEMBERS = """member_id,tier,name,epc,plates
M-spender,standard,Spender,,沪AD00001
M-saver,standard,Saver,,沪A·D00002; 沪A-F00002
M-short,standard,Short,,沪AD00003
"""
DAY = "2026-11-23"


def receipt(txn_id: str, member_id: str, amount: str, store: str, day: str = DAY, at: str = "10:30") -> dict:
    return {
        "type": "pos_transaction",
        "txn_id": txn_id,
        "store_id": store,
        "workstation_id": "T1",
        "seq": 1,
        "ts": f"{day}T{at}:00+08:00",
        "business_day": day,
        "kind": "sale",
        "total": amount,
        "member_id": member_id,
        "lines": [
            {"sku": "SKU-1", "qty": 1, "unit_price": amount, "amount": amount, "category": "sports", "brand": "Nike"}
        ],
    }


def gate(plate: str, direction: str, at: str) -> dict:
    return {
        "type": "parking_event",
        "gate_id": "G-in-1" if direction == "entry" else "G-out-1",
        "car_park_id": "P-B2",
        "plate": plate,
        "direction": direction,
        "ts": f"{DAY}T{at}:00+08:00",
    }


def replay(config: Path, path: Path, events: list[dict]) -> None:
    path.write_text("".join(json.dumps(event, ensure_ascii=False) + "\n" for event in events), encoding="utf-8")
    cli(config, "replay", str(path), "--wait")


def sql(config: Path, query: str) -> list[dict]:
    return [json.loads(line) for line in cli(config, "sql", query, "--format", "json").stdout.splitlines() if line]


def settlements(bootstrap: str) -> list[tuple[bytes, bytes]]:
    """Every parking settlement on loyalty.requests, as sent (key, value)."""
    consumer = KafkaConsumer(
        "loyalty.requests",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        group_id=None,
    )
    try:
        return [(m.key, m.value) for m in consumer if json.loads(m.value)["type"] == "parking_settlement"]
    finally:
        consumer.close()


LEDGER = """SELECT member_id, cause, amount, delta, reason, rule_id, rule_version != '' AS versioned, store_id,
                  toString(business_day) AS day, entry_id
           FROM {db}.ledger_entries WHERE startsWith(txn_id, 'parking:') ORDER BY member_id, cause
           SETTINGS output_format_json_quote_64bit_integers = 0"""


def test_members_park_free_on_the_days_spend_or_pay_from_the_card_and_others_pay_the_table(tmp_path, broker):
    members = tmp_path / "members.csv"
    members.write_text(MEMBERS, encoding="utf-8")
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES.read_text() + PARKING)
    config = write_config(tmp_path, broker, rules={"file": str(rules)}, members={"source": str(members)})
    settings = load(config)

    with WorkerProcess(config, tmp_path / "worker.log"):
        replay(
            config,
            tmp_path / "receipts.jsonl",
            [
                receipt("r1", "M-spender", "120.00", "S201", at="10:20"),
                receipt("r2", "M-spender", "130.00", "S202"),  # 250.00 today: free parking
                receipt("r3", "M-saver", "1500.00", "S201", day="2026-11-22"),  # yesterday's points pay today's fee
                receipt("r4", "M-saver", "50.00", "S203"),
                receipt("r5", "M-short", "150.00", "S203"),  # 150 points: short of the 1000 the fee costs
            ],
        )
        cars = ["沪AD00001", "沪AF00002", "沪A D00003", "沪B12345"]  # the third read with a space
        replay(
            config,
            tmp_path / "gates.jsonl",
            [gate(plate, "entry", "10:00") for plate in cars]
            + [gate("沪C55555", "entry", "11:00")]
            + [gate(plate, "exit", "11:30") for plate in cars]
            + [gate("沪C55555", "exit", "11:20")],
        )
        entries = sql(config, LEDGER)
        stays = {
            row["plate_hash"]: row
            for row in sql(config, "SELECT plate_hash, member_id, toString(fee) AS fee FROM {db}.parking_stays")
        }
        charges = {
            row["plate_hash"]: row
            for row in sql(
                config,
                """
            SELECT plate_hash, fee_cents, waived_cents, charged_cents, free_reason, paid_with, points_spent, note
            FROM {db}.parking_charges SETTINGS output_format_json_quote_64bit_integers = 0""",
            )
        }
        saver = json.loads(cli(config, "member", "M-saver").stdout)["balances"]
        report = json.loads(
            cli(config, "report", "parking", "--from", DAY, "--to", "2026-11-24", "--format", "json").stdout
        )

        sent = settlements(settings.kafka.bootstrap_servers)
        assert len(sent) == 3, "one settlement per member's car, none for the others"
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        for key, value in sent:  # delivered again, as after a crash before the parking agent's commit
            producer.send("loyalty.requests", key=key, value=value).get(timeout=10)
        producer.close()
        assert wait_until_processed(settings, timeout=60, progress=False)
        time.sleep(1)  # a sink flush
        again = sql(config, LEDGER)
        saver_again = json.loads(cli(config, "member", "M-saver").stdout)["balances"]

    assert [(e["member_id"], e["cause"], e["amount"], e["delta"], e["reason"]) for e in entries] == [
        ("M-saver", "parking_fee", 1000, 0, ""),
        ("M-saver", "points_spent", 0, -1000, ""),
        ("M-short", "parking_fee", 1000, 0, "paid cash: 1000 points needed, 150 on the card"),
        ("M-spender", "parking_discount", 1000, 0, "same-day spend 25000 >= 20000 cents"),
        ("M-spender", "parking_fee", 1000, 0, ""),
    ]
    assert {(e["rule_id"], e["versioned"], e["store_id"], e["day"]) for e in entries} == {
        ("parking-2026", 1, "P-B2", DAY)
    }
    assert saver == {"points": 1550 - 1000, "stored_value_cents": 0}

    # ClickHouse knows the cars by the keyed hash of their plates (the hub's key), never by the plates
    plate = Pseudonym.of(settings)
    assert {key: (row["member_id"], row["fee"]) for key, row in stays.items()} == {
        plate("沪AD00001"): ("M-spender", None),
        plate("沪AF00002"): ("M-saver", None),
        plate("沪A D00003"): ("M-short", None),
        plate("沪B12345"): ("", "10"),
        plate("沪C55555"): ("", "0"),
    }
    assert {
        key: (row["fee_cents"], row["waived_cents"], row["charged_cents"], row["paid_with"])
        for key, row in charges.items()
    } == {
        plate("沪AD00001"): (1000, 1000, 0, ""),
        plate("沪AF00002"): (1000, 0, 1000, "points"),
        plate("沪A D00003"): (1000, 0, 1000, "cash"),
        plate("沪B12345"): (1000, 0, 1000, "cash"),
        plate("沪C55555"): (0, 0, 0, ""),
    }
    assert charges[plate("沪AD00001")]["free_reason"] == "same-day spend 25000 >= 20000 cents"
    assert charges[plate("沪AF00002")]["points_spent"] == 1000
    assert charges[plate("沪A D00003")]["note"].startswith("paid cash")
    assert not any("沪" in entry["entry_id"] for entry in entries), "a stay id names its plate: stored hashed"

    [eleven] = [row for row in report if row["interval_start"].startswith(f"{DAY} 11:00") and row["car_park"] == "P-B2"]
    assert (eleven["exits"], eleven["fees"], eleven["free_exits"], eleven["waived"]) == (5, 30, 1, 10)

    assert again == entries, "a settlement delivered again is settled once"
    assert saver_again == saver
