"""Which cards a day start must run: the due-day index gives what running every card every day gives."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import msgspec
import pytest

from mallstream.streams.core.accounts import MemberCard
from mallstream.streams.core.card_schedule import next_scheduled_day
from mallstream.streams.core.due import DueIndex
from mallstream.streams.core.notices import reminders
from mallstream.streams.core.operations import adjust_points, group_grant, scheduled_run
from mallstream.streams.core.rules import parse_rules
from tests.conftest import REPO

RULES = parse_rules((REPO / "config" / "rules.example.yaml").read_text(), "rules.example.yaml", 1)
WITHIN = dt.timedelta(days=7)
FIRST_DAY = dt.date(2025, 11, 20)
DAYS = 800


def start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), zone)


def run(card: MemberCard, day: dt.date, since: dt.date | None, zone: ZoneInfo) -> tuple[MemberCard, list]:
    """A day start for one card, as the loyalty agent runs it: what it did that was new."""
    ran, effects = scheduled_run(card, RULES, start(day, zone), since and start(since, zone))
    reminded, sent = reminders(ran, start(day, zone), WITHIN)
    fresh = sorted((e.kind, e.cause, e.delta) for e in effects if not e.replayed)
    return reminded, [*fresh, *sorted(n.notification_id for n in sent)]


def changed(card: MemberCard, rng: random.Random, moment: dt.datetime, n: int) -> MemberCard:
    """What receipts and the desk do to a card between day starts: points, vouchers, vouchers spent."""
    roll = rng.random()
    if roll < 0.4:
        return adjust_points(card, RULES, moment, f"adj-{n}", rng.choice([300, 1200, -500]), "desk", "test")[0]
    if roll < 0.8:
        return group_grant(
            {card.member_id: card}, [card.member_id], RULES, moment, f"g-{n}", campaign_id="welcome-back-50"
        )[0][card.member_id]
    spendable = [v for v in card.vouchers.values() if v.remaining]
    if not spendable:
        return card
    voucher = rng.choice(spendable)
    vouchers = {**card.vouchers, voucher.voucher_id: msgspec.structs.replace(voucher, remaining=0)}
    return msgspec.structs.replace(card, vouchers=vouchers)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("zone", [ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin")])
def test_running_only_the_due_cards_does_what_running_every_card_every_day_start_does(seed, zone):
    rng = random.Random(seed)
    birthdays = [
        None,
        *(dt.date(1960 + i, rng.randint(1, 12), rng.randint(1, 28)) for i in range(10)),
        dt.date(1992, 2, 29),
    ]
    members = [MemberCard(member_id=f"M{i}", tier=RULES.base_tier, birthday=rng.choice(birthdays)) for i in range(12)]
    every_day = {card.member_id: card for card in members}
    due_only = dict(every_day)
    index: DueIndex[str] = DueIndex()
    for card in members:
        index.put("p", card.member_id.encode(), _due(card, FIRST_DAY - dt.timedelta(days=1), zone))
    said_every_day, said_due_only, evaluations = [], [], 0
    last, day, n = None, FIRST_DAY, 0
    while day < FIRST_DAY + dt.timedelta(days=DAYS):
        for member_id in every_day:
            every_day[member_id], said = run(every_day[member_id], day, last, zone)
            said_every_day += [(day, member_id, s) for s in said]
        for _, key in index.pop_due("p", day.toordinal()):
            member_id = key.decode()
            due_only[member_id], said = run(due_only[member_id], day, last, zone)
            said_due_only += [(day, member_id, s) for s in said]
            index.put("p", key, _due(due_only[member_id], day, zone))
            evaluations += 1
        for _ in range(rng.choice([0, 0, 1, 3])):  # receipts and desk work during the day
            member_id, n = rng.choice(list(every_day)), n + 1
            moment = start(day, zone) + dt.timedelta(minutes=rng.randint(1, 1439))
            every_day[member_id] = changed(every_day[member_id], random.Random(n), moment, n)
            due_only[member_id] = changed(due_only[member_id], random.Random(n), moment, n)
            index.put("p", member_id.encode(), _due(due_only[member_id], day, zone))
        last, day = day, day + dt.timedelta(days=rng.choice([1, 1, 1, 1, 2, 9]))  # a fast replay skips days
    assert in_order(said_due_only) == in_order(said_every_day)
    assert {kind for _, _, (kind, *_) in (s for s in said_every_day if isinstance(s[2], tuple))} >= {
        "rebate",
        "voucher_expired",
        "points_earned",
    }
    assert any("voucher_expiring" in str(s[2]) for s in said_every_day) and any(
        str(s[2]).startswith("birthday:M") for s in said_every_day
    )
    assert evaluations < len(members) * DAYS / 10  # the point: far fewer runs than cards x days
    for member_id, card in due_only.items():
        assert (card.points, card.stored_value, {v.voucher_id: v.remaining for v in card.vouchers.values()}) == (
            every_day[member_id].points,
            every_day[member_id].stored_value,
            {v.voucher_id: v.remaining for v in every_day[member_id].vouchers.values()},
        )


def in_order(said: list) -> list:
    return sorted(said, key=lambda entry: (entry[0], entry[1], str(entry[2])))


def _due(card: MemberCard, after: dt.date, zone: ZoneInfo) -> int | None:
    day = next_scheduled_day(card, RULES, after, zone, WITHIN)
    return day and day.toordinal()


def test_a_card_with_nothing_dated_is_never_due_and_a_voucher_makes_it_due_for_reminder_and_expiry():
    zone = ZoneInfo("Asia/Shanghai")
    card = MemberCard(member_id="M1", tier=RULES.base_tier)
    assert next_scheduled_day(card, RULES, FIRST_DAY, zone, WITHIN) is None
    noon = start(FIRST_DAY, zone) + dt.timedelta(hours=12)
    granted = group_grant({"M1": card}, ["M1"], RULES, noon, "g", campaign_id="welcome-back-50")[0]["M1"]
    (voucher,) = granted.vouchers.values()
    reminder = next_scheduled_day(granted, RULES, FIRST_DAY, zone, WITHIN)
    assert reminder == (voucher.valid_to - WITHIN).astimezone(zone).date() + dt.timedelta(days=1)
    reminded, _ = reminders(granted, start(reminder, zone), WITHIN)
    expiry = next_scheduled_day(reminded, RULES, reminder, zone, WITHIN)
    assert expiry == voucher.valid_to.astimezone(zone).date() + dt.timedelta(days=1)
