"""The rule file: precise validation errors, safe formulas, reload on change, versions."""

import os
from decimal import Decimal
from pathlib import Path

import pytest

from mallstream.settings import ConfigError
from mallstream.streams.core.formula import Formula, FormulaError
from mallstream.streams.core.rules import RuleFile, parse_rules

EXAMPLE = Path(__file__).parent.parent / "config" / "rules.example.yaml"
CAMPAIGN = "voucher_campaigns: [{id: c1, reward: 100, validity: {days: 30}, trigger: {spend: 300}}]\n"


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, "rules.yaml", 1)
    return caught.value


def test_the_example_file_is_valid_and_holds_the_seed_campaigns():
    book = parse_rules(EXAMPLE.read_text(), EXAMPLE, 1)
    cosmetics, clothing = book.campaign("cosmetics-300-100"), book.campaign("clothing-500-200")
    assert (cosmetics.trigger.spend, cosmetics.reward, cosmetics.usage_scope.categories) == (
        30000,
        10000,
        {"cosmetics"},
    )
    assert (clothing.trigger.spend, clothing.reward, clothing.usage_scope.categories) == (50000, 20000, {"clothing"})


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("earning: {rat: 2}", "earning.rat", "Extra inputs are not permitted"),
        ("earning: {rate: -1}", "earning.rate", "greater than or equal to 0"),
        (
            "voucher_campaigns: [{id: c, reward: 10.001, validity: {days: 1}}]",
            "voucher_campaigns.0.reward",
            "at most 2 decimals",
        ),
        (
            "voucher_campaigns: [{id: c, reward: 10, validity: {}}]",
            "voucher_campaigns.0.validity",
            "give days, ends, or both",
        ),
        (
            "voucher_campaigns: [{id: c, reward: 10, validity: {days: 1}, usage_scope: {category: [x]}}]",
            "voucher_campaigns.0.usage_scope",
            "unknown field `category`",
        ),
        (
            "voucher_campaigns: [{id: c, reward: 10, validity: {ends: 2026-12-31T00:00:00}}]",
            "voucher_campaigns.0.validity",
            "needs a UTC offset",
        ),
        (
            "rebates: [{id: r, mode: manual, ratio: 0.01, fixed: 5, per_points: 100}]",
            "rebates.0",
            "exactly one of ratio, fixed, formula",
        ),
        ("rebates: [{id: r, mode: automatic, ratio: 0.01}]", "rebates.0", "needs run_on"),
        ("rebates: [{id: r, mode: automatic, ratio: 0.01, run_on: ['13-01']}]", "rebates.0.run_on.0", "pattern"),
        (
            "rebates: [{id: r, mode: points_payment, fixed: 1, per_points: 100}]",
            "rebates.0",
            "points_payment needs a ratio",
        ),
        ("rebates: [{id: r, mode: manual, formula: 'points.__class__'}]", "rebates.0.formula", "is not allowed"),
        (
            "rebates: [{id: r, mode: manual, formula: 'balance / 100'}]",
            "rebates.0.formula",
            "unknown variable 'balance'",
        ),
        ("tier_discounts: [{id: d, tiers: [gold], percent: 5}]", "tier_discounts.0.tiers", "unknown tier 'gold'"),
        (
            "tier_discounts: [{id: d, tiers: [standard], percent: 5, amount: 3}]",
            "tier_discounts.0",
            "exactly one of percent, amount",
        ),
        (
            "parking: {fee_table: [{up_to_minutes: 60, fee: 5}, {up_to_minutes: 30, fee: 1}]}",
            "parking",
            "strictly increase",
        ),
        ("card_statuses: {stolen: {earn: false, pay: false}}", "card_statuses.stolen.[key]", "Input should be"),
        (
            CAMPAIGN + "tier_discounts: [{id: c1, tiers: [standard], percent: 5}]",
            "tier_discounts.0.id",
            "'c1' is used twice",
        ),
        ("birthday_gift: {voucher_campaign: nope}", "birthday_gift.voucher_campaign", "no voucher campaign 'nope'"),
        ("version: 3", "version", "set by the loader"),
        ("earning: [1, 2", "line 1", "not valid YAML"),
        ("- 1", "(top level)", "expected a mapping"),
    ],
)
def test_mistakes_are_refused_with_file_key_and_problem(text, key, problem):
    refused = error(text)
    assert (refused.file, refused.key) == ("rules.yaml", key)
    assert problem in refused.problem
    assert str(refused).startswith(f"rules.yaml: {key}: ")


def test_money_is_integer_cents_and_partial_statuses_keep_the_defaults():
    book = parse_rules(
        "voucher_campaigns: [{id: c, reward: 12.5, validity: {days: 1}}]\ncard_statuses: {frozen: {earn: false, pay: true}}",
        "r",
        1,
    )
    assert book.voucher_campaigns[0].reward == 1250
    assert book.card_statuses["frozen"].pay and not book.card_statuses["lost"].pay and book.card_statuses["active"].earn


def test_formulas_compute_exact_decimals_and_refuse_everything_but_arithmetic():
    formula = Formula("floor(points / 1000) * (10 + 2 * tier_rank) - min(1, 0.5)", frozenset({"points", "tier_rank"}))
    assert formula({"points": Decimal(2999), "tier_rank": Decimal(1)}) == Decimal("23.5")
    for bad in ("__import__('os')", "points ** 99", "(lambda: 1)()", "'a'", "points if 1 else 0", "max(points, key=1)"):
        with pytest.raises(FormulaError):
            Formula(bad, frozenset({"points"}))
    with pytest.raises(FormulaError, match="cannot compute"):
        Formula("points / tier_rank", frozenset({"points", "tier_rank"}))(
            {"points": Decimal(1), "tier_rank": Decimal(0)}
        )


def write(path: Path, text: str, tick: int) -> None:
    """Write and move the mtime on, so a change within one clock tick is still seen."""
    path.write_text(text)
    os.utime(path, ns=(tick * 10**9, tick * 10**9))


def test_a_changed_file_is_reloaded_with_the_next_version_number(tmp_path):
    path = tmp_path / "rules.yaml"
    write(path, "earning: {rate: 1}\n", 1)
    rules = RuleFile(path)
    first = rules.current()
    assert first.version.number == 1 and first.earning.rate == 1
    assert rules.current() is first  # unchanged file: not re-read
    write(path, "earning: {rate: 2}\n", 2)
    second = rules.current()
    assert second.version.number == 2 and second.earning.rate == 2
    assert second.version.digest != first.version.digest and second.tag == f"2-{second.version.digest}"


def test_the_file_is_looked_at_no_more_often_than_asked(tmp_path, monkeypatch):
    import time

    path = tmp_path / "rules.yaml"
    write(path, "earning: {rate: 1}\n", 1)
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    rules = RuleFile(path, check_every_s=0.2)
    first = rules.current()
    write(path, "earning: {rate: 2}\n", 2)
    clock[0] += 0.1
    assert rules.current() is first  # within the interval: the edit is not seen yet
    clock[0] += 0.15
    assert rules.current().earning.rate == 2


def test_touching_a_file_without_changing_it_keeps_the_version(tmp_path):
    path = tmp_path / "rules.yaml"
    write(path, "earning: {rate: 1}\n", 1)
    rules = RuleFile(path)
    first = rules.current()
    write(path, "earning: {rate: 1}\n", 2)
    assert rules.current() is first


def test_a_broken_edit_keeps_the_previous_rules_in_force_and_says_why(tmp_path):
    path = tmp_path / "rules.yaml"
    write(path, "earning: {rate: 1}\n", 1)
    rules = RuleFile(path, first_number=7)
    good = rules.current()
    write(path, "earning: {rate: one}\n", 2)
    assert rules.current() is good
    assert rules.error is not None and rules.error.key == "earning.rate"
    write(path, "earning: {rate: 3}\n", 3)
    fixed = rules.current()
    assert fixed.earning.rate == 3 and fixed.version.number == 8 and rules.error is None


def test_a_file_that_was_never_good_raises(tmp_path):
    path = tmp_path / "rules.yaml"
    with pytest.raises(ConfigError, match=r"rules\.yaml: \(file\)"):
        RuleFile(path).current()
    write(path, "tiers: []\n", 1)
    with pytest.raises(ConfigError, match="tiers"):
        RuleFile(path).current()
