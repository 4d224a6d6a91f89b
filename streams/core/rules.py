"""Loyalty rules as data: the rule file's schema, its validation, and reloading it.

A rule file is YAML (see ``config/rules.example.yaml``). Every mistake is refused
as ``file: key: problem`` through :class:`~mallstream.settings.ConfigError`,
unknown keys included, so a typo cannot silently switch a rule off. Money in the
file is in currency units (``300`` or ``12.50``) and becomes integer cents here.

Each accepted file content gets a :class:`RuleVersion` (an increasing number and
a content hash); every effect the engine produces names the version that made
it. :class:`RuleFile` re-reads the file when it changes and keeps the last good
rules in force when an edit is broken.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ...settings import ConfigError
from .formula import Formula
from .scopes import EVERYTHING, Scope

CardStatus = Literal["active", "lost", "frozen", "recalled"]
#: Variables a rebate formula may use.
REBATE_VARIABLES = frozenset({"points", "tier_rank"})


def _to_cents(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("expected an amount in currency units, e.g. 300 or 12.50")
    amount = Decimal(str(value))
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"{value} is not an amount with at most 2 decimals")
    if amount < 0:
        raise ValueError(f"{value} must not be negative")
    return int(amount * 100)


def _to_scope(value: Any) -> Scope:
    if isinstance(value, Scope):
        return value
    if not isinstance(value, dict):
        raise ValueError("expected a mapping such as {categories: [cosmetics]}")
    try:
        return msgspec.convert(value, Scope)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


def _to_formula(value: Any) -> Formula:
    if isinstance(value, Formula):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a formula as text, e.g. 'floor(points / 100) * 1'")
    return Formula(value, REBATE_VARIABLES)


Cents = Annotated[int, BeforeValidator(_to_cents)]
RuleScope = Annotated[Scope, BeforeValidator(_to_scope)]
RuleId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]


class RuleModel(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class BusinessDays(RuleModel):
    """Inclusive business-day window; an open end is unbounded."""

    starts: dt.date | None = None
    ends: dt.date | None = None

    def contains(self, day: dt.date) -> bool:
        return (self.starts is None or day >= self.starts) and (self.ends is None or day <= self.ends)

    @model_validator(mode="after")
    def _ordered(self) -> BusinessDays:
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError("ends is before starts")
        return self


class Multiplier(BusinessDays):
    """Extra points on lines in scope: a factor of 2 adds one more base rate (factors add, not compound)."""

    id: RuleId
    factor: Decimal = Field(gt=0)
    scope: RuleScope = EVERYTHING
    tiers: frozenset[str] = frozenset()
    birthday_week: bool = Field(default=False, description="only in the ISO week holding the member's birthday")


class Earning(RuleModel):
    id: RuleId = "earn-base"
    rate: Decimal = Field(default=Decimal(1), ge=0, description="points per currency unit spent")
    exclude: tuple[RuleScope, ...] = ()
    no_points_on_tenders: frozenset[str] = frozenset({"voucher", "points"})
    multipliers: list[Multiplier] = []
    cap_per_transaction: int | None = Field(default=None, ge=0)
    cap_per_day: int | None = Field(default=None, ge=0)


class Trigger(RuleModel):
    spend: Cents = Field(gt=0)
    scope: RuleScope = EVERYTHING
    within: Literal["transaction", "business_day"] = "transaction"
    repeat: bool = Field(default=False, description="one voucher per full multiple of spend")


class Validity(RuleModel):
    """How long an issued voucher pays: ``days`` from issue, and/or fixed bounds (valid_to exclusive)."""

    days: int | None = Field(default=None, ge=1)
    starts: dt.datetime | None = None
    ends: dt.datetime | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Validity:
        if self.days is None and self.ends is None:
            raise ValueError("give days, ends, or both")
        for name in ("starts", "ends"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} needs a UTC offset, e.g. 2026-12-31T23:59:59+08:00")
        return self


class VoucherCampaign(BusinessDays):
    """Trigger + reward: spending ``trigger.spend`` in scope issues a voucher of ``reward``.

    ``starts``/``ends`` bound the business days on which the campaign triggers. A
    campaign without a trigger is only granted by operations (birthday, groups).
    """

    id: RuleId
    name: str = ""
    trigger: Trigger | None = None
    reward: Cents = Field(gt=0)
    usage_scope: RuleScope = EVERYTHING
    validity: Validity
    limit_per_member: int | None = Field(default=None, ge=1)
    limit_per_member_per_day: int | None = Field(default=None, ge=1)


class RebateStrategy(RuleModel):
    """Points into money: a ``ratio`` (money per point), ``fixed`` money per ``per_points``, or a ``formula``."""

    id: RuleId
    stores: frozenset[str] = Field(default=frozenset(), description="empty: the whole organisation")
    mode: Literal["automatic", "semi_automatic", "manual", "points_payment"]
    ratio: Decimal | None = Field(default=None, gt=0)
    fixed: Cents | None = None
    per_points: int | None = Field(default=None, ge=1)
    formula: Annotated[Formula, BeforeValidator(_to_formula)] | None = None
    min_points: int = Field(default=0, ge=0)
    points_step: int = Field(default=1, ge=1)
    run_on: list[MonthDay] = []

    @model_validator(mode="after")
    def _one_way(self) -> RebateStrategy:
        ways = [name for name in ("ratio", "fixed", "formula") if getattr(self, name) is not None]
        if len(ways) != 1:
            raise ValueError(f"give exactly one of ratio, fixed, formula (got {', '.join(ways) or 'none'})")
        if self.fixed is not None and self.per_points is None:
            raise ValueError("fixed needs per_points: how many points buy that amount")
        if self.mode == "points_payment" and self.ratio is None:
            raise ValueError("points_payment needs a ratio: the money one point pays")
        if self.mode == "automatic" and not self.run_on:
            raise ValueError("an automatic rebate needs run_on dates (MM-DD)")
        return self

    def serves(self, store_id: str) -> bool:
        return not self.stores or store_id in self.stores


class TierDiscount(RuleModel):
    id: RuleId
    tiers: frozenset[str] = Field(min_length=1)
    percent: Decimal | None = Field(default=None, gt=0, le=100)
    amount: Cents | None = None
    scope: RuleScope = EVERYTHING
    exclude: tuple[RuleScope, ...] = ()
    min_spend: Cents = 0

    @model_validator(mode="after")
    def _one_way(self) -> TierDiscount:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("give exactly one of percent, amount")
        return self


class FeeStep(RuleModel):
    up_to_minutes: int = Field(gt=0)
    fee: Cents


class Parking(RuleModel):
    """Fee by duration, then free when same-day spend OR points reach a threshold, or by tier."""

    id: RuleId = "parking"
    fee_table: list[FeeStep] = Field(min_length=1)
    beyond_every_minutes: int = Field(default=60, gt=0)
    beyond_fee: Cents = 0
    daily_cap: Cents | None = None
    free_when_day_spend: Cents | None = None
    free_when_points: int | None = Field(default=None, ge=0)
    free_tiers: frozenset[str] = frozenset()
    points_per_yuan: int | None = Field(default=None, ge=1, description="paying the fee with points")
    stored_value: bool = True
    gate_pays_from: tuple[Literal["points", "stored_value"], ...] = Field(
        default=(),
        description="a member's car at the exit: the fee comes from the first of these the card covers, "
        "else the driver pays cash",
    )

    @model_validator(mode="after")
    def _increasing(self) -> Parking:
        minutes = [step.up_to_minutes for step in self.fee_table]
        if minutes != sorted(set(minutes)):
            raise ValueError("fee_table up_to_minutes must strictly increase")
        if "points" in self.gate_pays_from and self.points_per_yuan is None:
            raise ValueError("gate_pays_from names points, but points_per_yuan is not set")
        if "stored_value" in self.gate_pays_from and not self.stored_value:
            raise ValueError("gate_pays_from names stored_value, but stored_value is false")
        return self


class StatusPolicy(RuleModel):
    earn: bool = Field(description="sales earn points and vouchers")
    pay: bool = Field(description="stored value, vouchers and points may pay")


DEFAULT_STATUSES: dict[CardStatus, StatusPolicy] = {
    "active": StatusPolicy(earn=True, pay=True),
    "lost": StatusPolicy(earn=False, pay=False),
    "frozen": StatusPolicy(earn=False, pay=False),
    "recalled": StatusPolicy(earn=False, pay=False),
}


class BirthdayGift(RuleModel):
    id: RuleId = "birthday-gift"
    points: int = Field(default=0, ge=0)
    voucher_campaign: str | None = None


class GroupGrant(RuleModel):
    """Points and/or a voucher to every member a customer signal names (e.g. ``churn_risk``: a retention offer)."""

    id: RuleId
    signal: str = Field(min_length=1, description="kind on customers.signals: churn_risk, churned, recovered")
    points: int = Field(default=0, ge=0)
    voucher_campaign: str | None = None

    @model_validator(mode="after")
    def _grants_something(self) -> GroupGrant:
        if not self.points and not self.voucher_campaign:
            raise ValueError("give points, a voucher_campaign, or both")
        return self


class RuleChange(RuleModel):
    """Who made this version of the rule file and why: what the audit log records for it."""

    by: str = Field(min_length=1)
    why: str = ""


class Rules(RuleModel):
    """Everything a rule file holds."""

    tiers: list[RuleId] = Field(default=["standard"], min_length=1, description="the first is the base tier")
    earning: Earning = Earning()
    voucher_campaigns: list[VoucherCampaign] = []
    rebates: list[RebateStrategy] = []
    tier_discounts: list[TierDiscount] = []
    parking: Parking | None = None
    card_statuses: dict[CardStatus, StatusPolicy] = DEFAULT_STATUSES
    birthday_gift: BirthdayGift | None = None
    group_grants: list[GroupGrant] = []
    hold_seconds: int = Field(default=120, ge=1, description="an unsettled till authorisation expires after this")
    retention_days: int = Field(default=400, ge=1, description="older receipts are refused as too old")
    change: RuleChange | None = Field(default=None, description="who changed the file and why, for the audit log")

    @model_validator(mode="before")
    @classmethod
    def _statuses_over_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("card_statuses"), dict):
            data = {**data, "card_statuses": {**DEFAULT_STATUSES, **data["card_statuses"]}}
        return data

    @property
    def base_tier(self) -> str:
        return self.tiers[0]

    def campaign(self, campaign_id: str) -> VoucherCampaign | None:
        return next((c for c in self.voucher_campaigns if c.id == campaign_id), None)

    def points_payment(self, store_id: str) -> RebateStrategy | None:
        return next((r for r in self.rebates if r.mode == "points_payment" and r.serves(store_id)), None)


class RuleVersion(msgspec.Struct, frozen=True):
    number: int
    digest: str

    def __str__(self) -> str:
        return f"{self.number}-{self.digest}"


class RuleBook(Rules):
    """Validated rules plus the version every effect they produce will carry."""

    version: RuleVersion = RuleVersion(0, "defaults")

    @property
    def tag(self) -> str:
        return str(self.version)

    @cached_property
    def line_attributes_read(self) -> frozenset[str]:
        """Line attributes some rule's scope reads, worked out once per rule book."""
        scopes = [*self.earning.exclude, *(m.scope for m in self.earning.multipliers)]
        scopes += [c.trigger.scope for c in self.voucher_campaigns if c.trigger]
        scopes += [s for d in self.tier_discounts for s in (d.scope, *d.exclude)]
        return frozenset().union(*(scope.needed_attributes() for scope in scopes))


def _references(rules: Rules) -> list[tuple[str, str]]:
    """(key, problem) for ids that repeat and for tiers and campaigns that do not exist."""
    problems: list[tuple[str, str]] = []
    tiers = set(rules.tiers)
    if len(tiers) != len(rules.tiers):
        problems.append(("tiers", "a tier appears twice"))
    named = [("earning", rules.earning.id)]
    named += [(f"earning.multipliers.{i}", m.id) for i, m in enumerate(rules.earning.multipliers)]
    for section in ("voucher_campaigns", "rebates", "tier_discounts", "group_grants"):
        named += [(f"{section}.{i}", rule.id) for i, rule in enumerate(getattr(rules, section))]
    seen: set[str] = set()
    for key, rule_id in named:
        if rule_id in seen:
            problems.append((f"{key}.id", f"rule id {rule_id!r} is used twice"))
        seen.add(rule_id)
    tier_uses = [(f"earning.multipliers.{i}.tiers", m.tiers) for i, m in enumerate(rules.earning.multipliers)]
    tier_uses += [(f"tier_discounts.{i}.tiers", d.tiers) for i, d in enumerate(rules.tier_discounts)]
    if rules.parking:
        tier_uses.append(("parking.free_tiers", rules.parking.free_tiers))
    for key, used in tier_uses:
        for tier in sorted(used - tiers):
            problems.append((key, f"unknown tier {tier!r}; tiers are {', '.join(rules.tiers)}"))
    gift = rules.birthday_gift
    if gift and gift.voucher_campaign and rules.campaign(gift.voucher_campaign) is None:
        problems.append(("birthday_gift.voucher_campaign", f"no voucher campaign {gift.voucher_campaign!r}"))
    for i, grant in enumerate(rules.group_grants):
        if grant.voucher_campaign and rules.campaign(grant.voucher_campaign) is None:
            problems.append((f"group_grants.{i}.voucher_campaign", f"no voucher campaign {grant.voucher_campaign!r}"))
    return problems


def parse_rules(text: str, source: Path | str, number: int) -> RuleBook:
    """Validate rule-file text; raise :class:`ConfigError` naming the file, the key and the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            source, f"line {mark.line + 1}" if mark else "(file)", f"not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            source, "(top level)", "expected a mapping of rule sections (earning, voucher_campaigns, ...)"
        )
    if "version" in data:
        raise ConfigError(source, "version", "set by the loader from the file's content, not written in the file")
    try:
        rules = Rules.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(source, key, first["msg"].removeprefix("Value error, ")) from None
    for key, problem in _references(rules):
        raise ConfigError(source, key, problem)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return RuleBook.model_validate({**rules.__dict__, "version": RuleVersion(number, digest)})


class RuleFile:
    """The rules in force from one file, re-read when the file changes.

    A broken edit is recorded in :attr:`error` and the previous rules stay in force;
    only a file that was never good raises. Version numbers increase with each
    accepted change, starting from ``first_number`` (a worker passes the last number
    it recorded, so numbers keep increasing across restarts).
    """

    def __init__(self, path: Path | str, first_number: int = 1, check_every_s: float = 0.0) -> None:
        self.path = Path(path)
        #: the file is looked at no more often than this: an agent asks for the rules at every event
        self.check_every_s = check_every_s
        self._checked_at = float("-inf")
        self.error: ConfigError | None = None
        #: content digest of the edit :attr:`error` refused
        self.refused_digest: str | None = None
        self._next_number = first_number
        self._seen: tuple[int, int] | None = None
        self._book: RuleBook | None = None

    def current(self) -> RuleBook:
        """The rules in force now; raises :class:`ConfigError` only if no good file was ever read."""
        now = time.monotonic()
        if self._book is not None and now - self._checked_at < self.check_every_s:
            return self._book
        self._checked_at = now
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
            if seen != self._seen:
                self._seen = seen
                self._reload(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            self.error = ConfigError(self.path, "(file)", exc.strerror or str(exc))
        if self._book is None:
            assert self.error is not None
            raise self.error
        return self._book

    def _reload(self, text: str) -> None:
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        if self._book is not None and self._book.version.digest == digest:
            self.error = self.refused_digest = None  # a refused edit taken back
            return
        try:
            self._book = parse_rules(text, self.path, self._next_number)
        except ConfigError as exc:
            self.error, self.refused_digest = exc, digest
            return
        self.error = self.refused_digest = None
        self._next_number += 1
