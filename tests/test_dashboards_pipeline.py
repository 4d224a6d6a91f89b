"""Dashboards on a simulated day replayed through a real worker: every panel has rows, panels agree with reports."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import urllib.request
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import clickhouse_connect
import msgspec
import pytest
import yaml

from mallstream.churn_fit import FittedParams, fit_from_histories, save_params
from mallstream.customer_reports import CLASSES, SPLITS, WEEKDAYS
from mallstream.dashboards.check import expansion, panel_results
from mallstream.dashboards.grafana import DASHBOARDS_DIR, PROVISIONING, read_boards
from mallstream.replay import wait_until_processed
from mallstream.settings import Mall, load
from mallstream.simulators import mallday
from mallstream.simulators.members import vip_members
from mallstream.simulators.purchases import CHINA, PurchaseSimulation, receipts, simulate
from mallstream.streams.core.rules import parse_rules
from mallstream.streams.master_data import write_master_data
from mallstream.streams.records import PosLine, PosTransaction, Record, Tender, decode_input, encode
from tests.conftest import REPO, WorkerProcess, cli, running_broker, running_mosquitto, write_config
from tests.test_clickhouse_http import create_key, run_js

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(240)]

DAY = ("--from", "2026-11-23 00:00", "--to", "2026-11-23 12:30")  # mid-day: some VIPs are still inside
#: The last week up to mid-day: churn signals of the purchase history's last days, and the simulated day.
WEEK = ("--from", "2026-11-16 00:00", "--to", "2026-11-23 12:30")
#: Members' purchases on the 206 days before the simulated day, so customers have histories and classes.
HISTORY = PurchaseSimulation(members=120, days=206, start=dt.date(2026, 5, 1), seed=3)
RULES = REPO / "config" / "rules.example.yaml"  # vouchers, rebates, stored value: every kind of effect
COMES_BACK = dt.datetime(2026, 11, 23, 11, 30, tzinfo=CHINA)


def sql_rows(config: Path, query: str) -> list[dict]:
    return [json.loads(line) for line in cli(config, "sql", query, "--format", "json").stdout.splitlines()]


def write_events(path: Path, events: Iterable[Record]) -> Path:
    path.write_bytes(b"".join(encode(event) + b"\n" for event in events))
    return path


def purchase_history(mall: Mall) -> Iterator[PosTransaction]:
    """The simulated months of receipts, spread over the mall's stores (the food court's till pays rebates)."""
    stores = [store.id for store in mall.stores]
    for txn in receipts(simulate(HISTORY)):
        yield msgspec.structs.replace(txn, store_id=stores[txn.seq % len(stores)], mall_id=mall.id)


def members_come_back(config: Path, mall: Mall) -> Iterator[PosTransaction]:
    """Members spend a voucher of the seeds' campaigns they were given, and stored value a rebate paid them, on the
    simulated day (retention offers, granted to members flagged churn_risk, are left unspent)."""
    campaigns = {campaign.id: campaign for campaign in parse_rules(RULES.read_text(), RULES, 1).voucher_campaigns}
    vouchers = sql_rows(
        config,
        f"""
        SELECT member_id, voucher_id, rule_id, delta FROM {{db}}.ledger_entries
        WHERE cause = 'voucher_issued' AND rule_id IN ('cosmetics-300-100', 'clothing-500-200')
          AND ts > toDateTime('{COMES_BACK:%Y-%m-%d %H:%M:%S}', 'Asia/Shanghai') - INTERVAL 25 DAY
        ORDER BY entry_id LIMIT 10""",
    )
    balances = sql_rows(
        config,
        """
        SELECT member_id, argMax(balance_after, (ts, entry_id)) AS cents FROM {db}.ledger_entries
        WHERE account = 'stored_value' GROUP BY member_id HAVING cents > 0 ORDER BY member_id LIMIT 10""",
    )
    store = mall.stores[0].id

    def receipt(number: int, member: str, category: str, paid: list[Tender]) -> PosTransaction:
        total = sum((tender.amount for tender in paid), Decimal(0))
        line = PosLine(
            sku=f"BACK-{number}", qty=Decimal(1), unit_price=total, amount=total, category=category, brand="Lancome"
        )
        return PosTransaction(
            txn_id=f"back-{number}",
            store_id=store,
            workstation_id="T9",
            seq=number,
            ts=COMES_BACK + dt.timedelta(minutes=number),
            business_day=COMES_BACK.date(),
            kind="sale",
            total=total,
            lines=[line],
            tenders=paid,
            member_id=member,
            mall_id=mall.id,
        )

    for number, voucher in enumerate(vouchers):
        [category] = campaigns[voucher["rule_id"]].usage_scope.categories
        yield receipt(
            number,
            voucher["member_id"],
            category,
            [
                Tender("voucher", Decimal(int(voucher["delta"])) / 100, voucher["voucher_id"]),
                Tender("alipay", Decimal(50)),
            ],
        )
    for number, balance in enumerate(balances, start=len(vouchers)):
        yield receipt(
            number, balance["member_id"], "shoes", [Tender("stored_value", Decimal(int(balance["cents"]) // 2) / 100)]
        )


def acknowledge(worker: WorkerProcess, alert_id: str, body: dict) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}/alerts/{alert_id}/ack",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **worker.headers},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def churn_params(path: Path) -> Path:
    """BG/NBD parameters fitted on other members, so the worker scores P(alive) and raises churn signals."""
    calibration = simulate(PurchaseSimulation(members=5000, days=180, seed=99))
    save_params(
        path, FittedParams(fit_from_histories(calibration.purchase_days, 180), None, 5000, dt.datetime.now(dt.UTC))
    )
    return path


def hub_day(mall: Mall) -> mallday.MallDay:
    """A 4-hour weekday with many VIPs."""
    return replace(
        mallday.scenario("weekday", mall, duration=dt.timedelta(hours=4)), visitors=3000, vip_share=0.03, vip_pool=500
    )


def with_an_aisle_counter(config: Path) -> None:
    """A counter in the atrium, the aisle before Zara, so the footfall board has a capture rate."""
    data = yaml.safe_load(config.read_text())
    mall = data["malls"][0]
    mall["people_counters"].append({"id": "C-atrium", "place": "Z-atrium"})
    mall["footfall"]["aisle_counters"] = {"S201": "C-atrium"}
    config.write_text(yaml.safe_dump(data))


def fed_receipts(config: Path) -> list[PosTransaction]:
    """Every receipt the hub was given: the months of history, the simulated day and the members coming back."""
    return [
        decode_input(line)
        for name in ("history", "day", "back")
        for line in (config.parent / f"{name}.jsonl").read_bytes().splitlines()
        if b'"pos_transaction"' in line
    ]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """A config whose ClickHouse holds months of member purchases, then a replayed 4-hour weekday with VIPs,
    members coming back with vouchers and stored value, and a VIP arrival acknowledged.

    The worker keeps running and answers the tests' queries: opening chdb again and again in the test
    process leaks file descriptors until select() (paho, pyserial) fails in the tests that follow."""
    tmp = tmp_path_factory.mktemp("dashboards")
    with running_broker(tmp / "broker") as bootstrap, running_mosquitto(lambda port: ["-p", str(port)]) as mqtt:
        members = tmp / "members.csv"
        config = write_config(
            tmp,
            bootstrap,
            mqtt={"mode": "external", "port": mqtt},
            members={"source": str(members)},
            rules={"file": str(RULES)},
            customers={
                "params_file": str(churn_params(tmp / "bgnbd.json")),
                "tick_every_days": 7,
                "timer_seconds": 0.2,
                "pyramid_seconds": 1.0,
            },
        )
        with_an_aisle_counter(config)
        settings = load(config)
        mall = settings.malls[0]
        day = hub_day(mall)
        write_master_data(members, vip_members(mall, day))
        history = write_events(tmp / "history.jsonl", purchase_history(mall))
        recording = write_events(tmp / "day.jsonl", mallday.simulate(mall, day).events)
        with WorkerProcess(config, tmp / "worker.log") as worker:
            cli(config, "replay", str(history), "--wait")
            cli(config, "replay", str(recording), "--wait")
            cli(config, "replay", str(write_events(tmp / "back.jsonl", members_come_back(config, mall))), "--wait")
            [arrival] = sql_rows(
                config, "SELECT alert_id FROM {db}.alerts WHERE kind = 'vip_arrival' ORDER BY ts LIMIT 1"
            )
            acknowledge(
                worker,
                arrival["alert_id"],
                {"staff_id": "S-17", "note_kind": "request", "note": "a table at the tea room"},
            )
            time.sleep(2)  # the last ticks and a pyramid recompute after the last receipt
            assert wait_until_processed(settings, timeout=60, progress=False)
            yield config


def test_every_panel_of_every_dashboard_runs_and_returns_rows(hub):
    result = cli(hub, "dashboards", "check", *WEEK, "--require-data")
    assert "5 dashboards" in result.stdout and "returned rows" in result.stdout


def test_loyalty_vip_and_customer_panels_show_what_the_members_and_staff_did(hub):
    settings = load(hub)
    zone = ZoneInfo(settings.malls[0].timezone)
    start, end = (dt.datetime.fromisoformat(moment).replace(tzinfo=zone) for moment in WEEK[1::2])
    panels = {
        result.panel: result.rows
        for board in read_boards(PROVISIONING)
        for result in panel_results(settings, board, settings.malls[0].id, start, end)
    }
    vouchers = {row["campaign"]: row for row in panels["Vouchers issued and redeemed by campaign"]}
    # the seeds' campaigns, and the retention offer the rule file grants members flagged churn_risk
    assert (
        {"cosmetics-300-100", "clothing-500-200"}
        <= set(vouchers)
        <= {"cosmetics-300-100", "clothing-500-200", "welcome-back-50"}
    )
    assert sum(row["redeemed"] for row in vouchers.values()) == 10  # every voucher a member came back with
    given = {
        row["cause"]
        for row in panels["What members were given, by rule: vouchers spent, tier discounts, rebates, free parking"]
    }
    assert {"voucher_redeemed", "rebate"} <= given
    assert panels["Alerts acknowledged"] == [{"acknowledged": 1}]
    [notes] = panels["Reception notes"]
    assert (notes["staff"], notes["kind"], notes["note"]) == ("S-17", "request", "a table at the tea room")
    assert {row["kind"] for row in panels["Churn signals"]} >= {"churn_risk", "churned"}

    printed = " ".join(cli(hub, "report", "customers").stdout.split())
    for row in panels["Value classes"]:  # the report's table: class, members, member share, spend, spend share
        assert (
            f"{row['class']} {row['members']:,} {row['member share']:.1%} {row['spend ¥']:,.2f} "
            f"{row['spend share']:.1%}" in printed
        )
    stages = {row["stage"]: row["members"] for row in panels["Members per lifecycle stage"]}
    assert sum(stages.values()) == panels["Members"][0]["members"] > 100
    for stage, members in stages.items():
        assert f"{stage} {members:,}" in printed


def test_a_broken_query_and_a_schema_error_fail_check_naming_dashboard_and_panel(hub, tmp_path):
    shutil.copytree(PROVISIONING, tmp_path / "provisioning")
    path = tmp_path / "provisioning" / DASHBOARDS_DIR / "mallstream-vip.json"
    board = json.loads(path.read_text())
    board["panels"][0]["targets"][0]["rawSql"] = board["panels"][0]["targets"][0]["rawSql"].replace(
        "alerts", "alerts_missing"
    )
    board["panels"][1]["gridPos"]["w"] = "wide"
    path.write_text(json.dumps(board))
    result = cli(hub, "dashboards", "check", "--provisioning", str(tmp_path / "provisioning"), *DAY, check=False)
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("dashboard")]
    assert len(failures) == 2, result.stderr
    assert failures[0].startswith(f"dashboard 'VIP', panel {board['panels'][1]['title']!r}: TS2322")
    assert failures[1].startswith(f"dashboard 'VIP', panel {board['panels'][0]['title']!r}: query failed")
    assert "alerts_missing" in failures[1]


def test_footfall_panels_show_the_figures_of_the_footfall_report(hub):
    settings = load(hub)
    zone = ZoneInfo(settings.malls[0].timezone)
    start, end = (dt.datetime.fromisoformat(moment).replace(tzinfo=zone) for moment in DAY[1::2])
    footfall = next(board for board in read_boards(PROVISIONING) if board["uid"] == "mallstream-footfall")
    panels = {
        result.panel: result.rows for result in panel_results(settings, footfall, settings.malls[0].id, start, end)
    }

    def report(*options: str) -> list[dict]:
        return json.loads(cli(hub, "report", "footfall", *DAY, *options, "--format", "json").stdout)

    quarter = report("--by", "entrance", "--interval", "15m")
    assert [(r["time"], r["place"], r["in"]) for r in panels["People in per entrance, 15 min"]] == [
        (r["interval_start"], r["place"], r["in"]) for r in quarter
    ]
    assert [(r["place"], r["out"]) for r in panels["People out per entrance, 15 min"]] == [
        (r["place"], r["out"]) for r in quarter
    ]
    daily = report("--by", "entrance", "--interval", "1d")
    assert panels["In"] == [{"In": sum(r["in"] for r in daily)}] and panels["In"][0]["In"] > 1000
    assert panels["Out"] == [{"Out": sum(r["out"] for r in daily)}]
    hourly: defaultdict[str, int] = defaultdict(int)
    for row in report("--by", "entrance"):
        hourly[row["interval_start"]] += row["in"]
    assert {
        r["time"]: r["today"] for r in panels["People in per hour: today against the same weekday last week"]
    } == dict(hourly)
    stores = report("--by", "store", "--interval", "1d")
    assert panels["Store visitors"] == [{"store": r["place"], "visitors": r["in"]} for r in stores]


def test_preview_draws_one_png_per_dashboard(hub, tmp_path):
    cli(hub, "dashboards", "preview", "--out", str(tmp_path), "--from", "2026-11-23 00:00", "--to", "2026-11-23 14:30")
    drawn = sorted(path.name for path in tmp_path.glob("*.png"))
    assert drawn == sorted(f"{board['uid']}.png" for board in read_boards(PROVISIONING))
    assert all((tmp_path / name).stat().st_size > 40_000 for name in drawn)


def test_every_query_of_every_dashboard_returns_rows_through_the_workers_clickhouse_endpoint(hub, tmp_path):
    """As Grafana's data source asks the embedded engine: over ClickHouse HTTP, with an analyst key; both official
    clients, Python's (Native) and JavaScript's (JSONEachRow, gzip both ways), get the same rows."""
    settings = load(hub)
    mall = settings.malls[0]
    zone = ZoneInfo(mall.timezone)
    start, end = (dt.datetime.fromisoformat(moment).replace(tzinfo=zone) for moment in WEEK[1::2])
    queries = []
    for board in read_boards(PROVISIONING):
        expand = expansion(board, mall.id, start, end)
        queries += [
            {"name": f"{board['title']}: variable {item['name']}", "sql": expand.sql(item["query"])}
            for item in board["templating"]["list"]
        ]
        queries += [
            {"name": f"{board['title']}: {panel['title']}", "ref": target["refId"], "sql": expand.sql(target["rawSql"])}
            for panel in board["panels"]
            for target in panel.get("targets", [])
        ]
    key = create_key(hub, "analyst", "grafana")
    port = yaml.safe_load(hub.read_text())["clickhouse"]["http_port"]
    client = clickhouse_connect.get_client(host="127.0.0.1", port=port, username="grafana", password=key)
    rows = [client.query(query["sql"]).row_count for query in queries]
    panels: defaultdict[str, int] = defaultdict(int)  # a panel's targets together, as `dashboards check` counts
    for query, count in zip(queries, rows, strict=False):
        panels[query["name"]] += count
    assert len(panels) > 50 and not [name for name, count in panels.items() if count == 0]
    answered = run_js(f"http://127.0.0.1:{port}", key, queries, tmp_path)["queries"]
    assert [query.get("rows", query.get("error")) for query in answered] == rows


def board_panels(config: Path, uid: str, window: tuple[str, ...] = WEEK) -> dict[str, list[dict]]:
    settings = load(config)
    zone = ZoneInfo(settings.malls[0].timezone)
    start, end = (dt.datetime.fromisoformat(moment).replace(tzinfo=zone) for moment in window[1::2])
    board = next(board for board in read_boards(PROVISIONING) if board["uid"] == uid)
    return {result.panel: result.rows for result in panel_results(settings, board, settings.malls[0].id, start, end)}


def test_each_class_visits_by_weekday_and_hour_and_spend_by_price_band_as_the_receipts_say(hub):
    classes = {
        row["member_id"]: row["value_class"]
        for row in sql_rows(hub, "SELECT member_id, value_class FROM {db}.customer_snapshots FINAL")
    }
    edges = load(hub).customers.price_band_edges
    weekdays: defaultdict[tuple[str, str], int] = defaultdict(int)
    hours: defaultdict[tuple[str, str], int] = defaultdict(int)
    bands: defaultdict[tuple[str, int], list[int]] = defaultdict(lambda: [0] * 5)  # member -> cents per band
    for txn in sorted(fed_receipts(hub), key=lambda txn: txn.ts):
        if txn.member_id is None:
            continue
        klass = classes[txn.member_id]
        if txn.kind == "sale":
            weekdays[(klass, WEEKDAYS[txn.business_day.weekday()])] += 1
            hours[(klass, f"{txn.ts.hour:02d}:00")] += 1
        if txn.kind in ("sale", "return"):
            member = bands[(klass, txn.member_id)]
            for line in txn.lines:
                band = bisect_right(edges, line.unit_price)
                member[band] = max(member[band] + (1 if txn.kind == "sale" else -1) * int(line.amount * 100), 0)
    spend: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    labels = SPLITS["price-band"].labels(edges)
    for (klass, _), cents in bands.items():
        for band, amount in enumerate(cents):
            spend[(klass, labels[band])] += Decimal(amount) / 100

    panels = board_panels(hub, "mallstream-customers")
    for by, column, truth, title in (
        ("weekday", "weekday", weekdays, "Visits by weekday: share of each class's visits"),
        ("hour", "hour", hours, "Visits by hour: share of each class's visits"),
        ("price-band", "price_band", spend, "Spend by unit-price band: share of each class's spend"),
    ):
        found = json.loads(cli(hub, "report", "customers", "--by", by, "--format", "json").stdout)
        reported = {(name, row[column]): Decimal(str(row[name])) for row in found for name in CLASSES if row[name]}
        assert reported == {key: value for key, value in truth.items() if value}, by
        totals = {name: sum(value for (klass, _), value in truth.items() if klass == name) for name in CLASSES}
        shown = {(name, row[column]): row[name] for row in panels[title] for name in CLASSES if row[name]}
        assert shown == pytest.approx(
            {key: float(value / totals[key[0]]) for key, value in truth.items() if value}, abs=5e-5
        ), by  # shares to four places
    assert len({bucket for _, bucket in hours}) > 5 and len(weekdays) >= 4 * 7 - 2


def test_brand_fans_are_members_who_bought_the_brand_and_the_panel_shows_the_report(hub):
    buyers: defaultdict[str, set[str]] = defaultdict(set)
    for txn in fed_receipts(hub):
        if txn.member_id and txn.kind == "sale":
            for line in txn.lines:
                buyers[line.brand].add(txn.member_id)
    found = json.loads(cli(hub, "report", "customers", "--by", "brand", "--format", "json").stdout)
    snapshots = sql_rows(hub, "SELECT member_id, top_brands, spend_cents FROM {db}.customer_snapshots FINAL")
    assert found and len(found) <= 20
    for row in found:
        fans = [member for member in snapshots if row["brand"] in member["top_brands"]]
        assert row["fans"] == len(fans) and {member["member_id"] for member in fans} <= buyers[row["brand"]]
        assert Decimal(str(row["spend"])) == Decimal(sum(int(member["spend_cents"]) for member in fans)) / 100
    panel = board_panels(hub, "mallstream-customers")[
        "Brand fans: members with the brand in their top three, and their spend"
    ]
    assert [(row["brand"], row["fans"]) for row in panel] == [(row["brand"], row["fans"]) for row in found]


def test_campaign_panels_show_who_took_part_what_they_were_given_and_spent(hub):
    issued = sql_rows(
        hub,
        """SELECT rule_id, member_id, voucher_id, txn_id, delta FROM {db}.ledger_entries
                              WHERE cause = 'voucher_issued'""",
    )
    campaign_of = {row["voucher_id"]: row["rule_id"] for row in issued}
    totals = {txn.txn_id: int(txn.total * 100) for txn in fed_receipts(hub)}
    redeemed: defaultdict[str, list] = defaultdict(list)  # campaign -> (member, cents) of each voucher spent
    for txn in fed_receipts(hub):
        for tender in txn.tenders:
            if tender.type == "voucher":
                redeemed[campaign_of[tender.reference]].append((txn.member_id, int(tender.amount * 100)))
    assert sum(len(spent) for spent in redeemed.values()) == 10  # every voucher the members came back with

    report = json.loads(
        cli(hub, "report", "campaigns", "--from", "2026-05-01", "--to", "2026-11-24", "--format", "json").stdout
    )
    rows = {row["campaign"]: row for row in report["campaigns"]}
    assert set(rows) == {row["rule_id"] for row in issued}
    for campaign, row in rows.items():
        mine = [entry for entry in issued if entry["rule_id"] == campaign]
        assert (row["members_issued"], row["vouchers_issued"]) == (len({e["member_id"] for e in mine}), len(mine))
        assert Decimal(str(row["issued"])) == Decimal(sum(int(e["delta"]) for e in mine)) / 100
        assert (
            Decimal(str(row["triggering_spend"])) == Decimal(sum(totals.get(e["txn_id"], 0) for e in mine)) / 100
        )  # offers: no receipt
        spent = redeemed.get(campaign, [])
        assert (row["members_redeemed"], Decimal(str(row["redeemed"]))) == (
            len({member for member, _ in spent}),
            Decimal(sum(cents for _, cents in spent)) / 100,
        ), campaign
    composition = defaultdict(int)
    for row in report["composition"]:
        composition[row["campaign"]] += row["members"]
    assert dict(composition) == {campaign: row["members_issued"] for campaign, row in rows.items()}

    panels = board_panels(hub, "mallstream-loyalty", ("--from", "2026-05-01 00:00", "--to", "2026-11-23 23:59"))
    participation = panels["Campaigns: who took part, vouchers, redemptions and the spend that earned them"]
    assert {
        row["campaign"]: (row["members given"], row["vouchers"], row["members redeemed"]) for row in participation
    } == {
        campaign: (row["members_issued"], row["vouchers_issued"], row["members_redeemed"])
        for campaign, row in rows.items()
    }
    by_class = panels["Campaign participants by value class and lifecycle stage, as they are now (all time)"]
    assert [(row["campaign"], row["class"], row["members"]) for row in by_class] == [
        (row["campaign"], row["value_class"], row["members"]) for row in report["composition"]
    ]


def test_the_capture_rate_panel_is_zaras_entries_per_passer_by_in_the_atrium(hub):
    truth = mallday.simulate(load(hub).malls[0], hub_day(load(hub).malls[0])).truth
    [row] = board_panels(hub, "mallstream-footfall", ("--from", "2026-11-23 00:00", "--to", "2026-11-24 00:00"))[
        "Capture rate: store entries ÷ passers-by in the aisle"
    ]
    entered = sum(flows["in"] for flows in truth.visitors["S201"].values())
    passed = sum(
        flows[way]
        for people in (truth.visitors, truth.staff)
        for flows in people.get("Z-atrium", {}).values()
        for way in ("in", "out")
    )
    assert row["store"] == "S201" and row["capture rate"] == pytest.approx(entered / passed)
