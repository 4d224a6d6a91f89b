"""Member notifications and reminders (pure), birthdays in master data, and the backtest command."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import msgspec
import pytest

from mallstream.settings import ConfigError
from mallstream.streams.core.notices import notices, reminders
from mallstream.streams.core.operations import adjust_points, group_grant, scheduled_run
from mallstream.streams.core.rules import parse_rules
from mallstream.streams.master_data import load_master_data
from tests.conftest import EXAMPLE_CONFIG, REPO

RULES = parse_rules((REPO / "tests" / "rules" / "ops.yaml").read_text(), "ops.yaml", 1)
NOON = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


def test_points_and_vouchers_notify_once_and_replays_notify_nobody():
    cards, effects = group_grant(
        {},
        ["M1"],
        RULES,
        NOON,
        "retention-offer:1",
        points=100,
        campaign_id="welcome-back-50",
        rule_id="retention-offer",
    )
    told = notices(cards["M1"], effects, NOON)
    assert sorted((n.kind, n.points_delta or n.amount_cents) for n in told) == [
        ("points_changed", 100),
        ("voucher_issued", 5000),
    ]
    again, replayed = group_grant(
        cards,
        ["M1"],
        RULES,
        NOON,
        "retention-offer:1",
        points=100,
        campaign_id="welcome-back-50",
        rule_id="retention-offer",
    )
    assert all(e.replayed for e in replayed) and notices(again["M1"], replayed, NOON) == []


def test_expiry_reminder_and_birthday_greeting_are_sent_once():
    cards, _ = group_grant({}, ["M1"], RULES, NOON, "g", campaign_id="welcome-back-50")
    card = msgspec.structs.replace(cards["M1"], birthday=dt.date(1990, 12, 2))
    week = dt.timedelta(days=7)
    early, none = reminders(card, NOON, week)  # the voucher runs to 4 Dec: not yet within a week
    assert none == [] and early is card
    monday = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    reminded, sent = reminders(card, monday, week)
    assert sorted(n.kind for n in sent) == ["birthday", "voucher_expiring"]
    assert reminders(reminded, monday + dt.timedelta(days=1), week)[1] == []


def test_a_manual_points_change_notifies_with_the_new_balance():
    card, effects = adjust_points(
        group_grant({}, ["M1"], RULES, NOON, "g", points=50)[0]["M1"], RULES, NOON, "T-9", -20, "clerk", "typo"
    )
    [told] = notices(card, effects, NOON)
    assert (told.kind, told.points_delta, told.points_balance, told.cause) == ("points_changed", -20, 30, "T-9")


def test_master_data_birthdays_are_dates_and_a_bad_one_is_named(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("member_id,tier,birthday\nM1,gold,1990-02-28\nM2,standard,\n")
    assert load_master_data(path).birthdays == {"M1": dt.date(1990, 2, 28)}
    path.write_text("member_id,tier,birthday\nM1,gold,28/02/1990\n")
    with pytest.raises(ConfigError, match="line 2: birthday: '28/02/1990' is not a date"):
        load_master_data(path)


def test_group_grant_naming_an_unknown_campaign_is_refused():
    text = (
        (REPO / "tests" / "rules" / "ops.yaml")
        .read_text()
        .replace("voucher_campaign: welcome-back-50", "voucher_campaign: nope")
    )
    with pytest.raises(ConfigError, match=r"group_grants\.0\.voucher_campaign: no voucher campaign 'nope'"):
        parse_rules(text, "ops.yaml", 1)


def test_backtest_prints_per_rule_outcomes_for_current_and_proposed_rules_and_plots(tmp_path):
    def mallstream(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mallstream.cli", "-c", str(EXAMPLE_CONFIG), *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )

    day = tmp_path / "day.jsonl"
    mallstream("simulate", "pos", "--count", "400", "-o", str(day))
    proposed = tmp_path / "double.yaml"
    proposed.write_text((REPO / "config" / "rules.example.yaml").read_text().replace("  rate: 1 ", "  rate: 2 ", 1))
    plot = tmp_path / "backtest.png"
    out = mallstream("backtest", "--rules", str(proposed), "--input", str(day), "--plot", str(plot)).stdout
    base = {line.split()[1]: int(line.split()[2]) for line in out.splitlines() if line.startswith("earn-base ")}
    assert 2 * base["current"] >= base["proposed"] > 1.9 * base["current"] > 0  # doubled, less caps and rounding
    assert "change: +" in out and plot.stat().st_size > 10_000


def test_one_scheduled_run_catches_up_on_the_days_since_the_last_and_never_runs_a_day_twice():
    rules = parse_rules((REPO / "config" / "rules.example.yaml").read_text(), "rules.example.yaml", 1)
    card, _ = adjust_points(group_grant({}, ["M1"], rules, NOON, "g")[0]["M1"], rules, NOON, "T", 5000, "c", "w")
    card = msgspec.structs.replace(card, birthday=dt.date(1990, 12, 2))
    january = dt.datetime(2027, 1, 2, tzinfo=dt.UTC)
    caught_up, effects = scheduled_run(card, rules, january, since=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))
    fresh = sorted({(e.kind, e.cause) for e in effects if not e.replayed})
    assert fresh == [
        ("points_earned", "birthday:birthday-gift:2026"),
        ("points_spent", "rebate:year-end:2026-12-31"),
        ("rebate", "rebate:year-end:2026-12-31"),
        ("voucher_expired", "expiry:birthday:birthday-gift:2026:welcome-back-50:0"),
        ("voucher_issued", "birthday:birthday-gift:2026"),
    ]
    _, again = scheduled_run(caught_up, rules, january, since=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))
    assert all(e.replayed for e in again)
    assert scheduled_run(card, rules, january)[1] == []  # without since: 2 January only, nothing due
