"""Member master data: who carries which RFID card and drives which car, their tier and what they like.

The card system exports it as CSV with a header row; every worker loads it at start.
Columns: ``member_id``, ``tier``, ``name``, ``epc`` (hex, may be empty), ``top_brands`` and
``top_categories`` (``|``-separated); optionally ``birthday`` (ISO date, for birthday-week points,
gifts and greetings), ``plates`` (the member's cars, ``;``-separated: a car leaving a car park under
one of them has its parking settled on the card, free parking included; plates are compared
upper-case without spaces, dashes or dots, so ``沪A·D1234`` and ``沪ad-1234`` are one plate) and the
static attributes customer composition is cut by: ``age_band``, ``gender``, ``region``,
``occupation``, ``education`` (free text, empty when unknown). Unknown columns are ignored, so an
export may carry more. A bad row stops the worker with file, line, column and problem, like a bad config.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mallstream.settings import ConfigError

from .core.parking import normalise_plate
from .core.vip import Member

COLUMNS = ("member_id", "tier", "name", "epc", "top_brands", "top_categories", "plates")
REQUIRED = ("member_id", "tier")
#: Optional columns describing who the member is, for the customer-composition dashboards.
PROFILE_COLUMNS = ("age_band", "gender", "region", "occupation", "education")


@dataclass(frozen=True, slots=True)
class Profile:
    """A member's static attributes as the card system knows them ("" when unknown)."""

    tier: str = ""
    age_band: str = ""
    gender: str = ""
    region: str = ""
    occupation: str = ""
    education: str = ""


_EPC = re.compile(r"^[0-9A-Fa-f]{4,64}$")


@dataclass(frozen=True)
class MasterData:
    """Members by id, by the EPC of their card (upper case) and by their cars' plates (normalised)."""

    by_id: dict[str, Member] = field(default_factory=dict)
    by_epc: dict[str, Member] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    birthdays: dict[str, dt.date] = field(default_factory=dict)
    #: normalised plate -> member id
    by_plate: dict[str, str] = field(default_factory=dict)

    def member_of_tag(self, epc: str) -> Member | None:
        return self.by_epc.get(epc.upper())

    def member_of_plate(self, plate: str) -> str | None:
        """The member whose car this is, however the camera spaced or cased the plate."""
        return self.by_plate.get(normalise_plate(plate))


def load_master_data(path: Path | None) -> MasterData:
    """Read the CSV export; no file configured means no known members (every tag is unknown)."""
    if path is None:
        return MasterData()
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return _parse(path, csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(path, "(file)", exc.strerror or str(exc)) from None


def _parse(path: Path, rows: csv.DictReader) -> MasterData:
    missing = [column for column in REQUIRED if column not in (rows.fieldnames or ())]
    if missing:
        raise ConfigError(path, "line 1", f"missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    data = MasterData()
    for row in rows:
        where = f"line {rows.line_num}"
        member_id, tier = (row.get("member_id") or "").strip(), (row.get("tier") or "").strip()
        if not member_id or not tier:
            raise ConfigError(path, where, "member_id and tier must not be empty")
        if member_id in data.by_id:
            raise ConfigError(path, f"{where}: member_id", f"{member_id!r} appears twice")
        epc = (row.get("epc") or "").strip().upper()
        if epc and not _EPC.match(epc):
            raise ConfigError(path, f"{where}: epc", f"{epc!r} is not a hex EPC of 4 to 64 digits")
        if epc in data.by_epc:
            raise ConfigError(path, f"{where}: epc", f"card {epc} is already issued to {data.by_epc[epc].member_id}")
        member = Member(
            member_id,
            tier,
            (row.get("name") or "").strip(),
            _listed(row.get("top_brands")),
            _listed(row.get("top_categories")),
        )
        data.by_id[member_id] = member
        data.profiles[member_id] = Profile(tier, *((row.get(column) or "").strip() for column in PROFILE_COLUMNS))
        if epc:
            data.by_epc[epc] = member
        for plate in filter(None, (normalise_plate(cell) for cell in (row.get("plates") or "").split(";"))):
            owner = data.by_plate.setdefault(plate, member_id)
            if owner != member_id:
                raise ConfigError(path, f"{where}: plates", f"plate {plate} is already registered to {owner}")
        birthday = (row.get("birthday") or "").strip()
        if birthday:
            try:
                data.birthdays[member_id] = dt.date.fromisoformat(birthday)
            except ValueError:
                raise ConfigError(path, f"{where}: birthday", f"{birthday!r} is not a date like 1990-05-17") from None
    return data


def _listed(cell: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (cell or "").split("|") if part.strip())


def write_master_data(path: Path, members: Iterable[tuple[Member, str] | tuple[Member, str, Sequence[str]]]) -> int:
    """Write members with their card EPC (and their cars' plates, if given) as the card system exports them;
    returns the rows written."""
    written = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for member, epc, *plates in members:
            writer.writerow(
                (
                    member.member_id,
                    member.tier,
                    member.name,
                    epc,
                    "|".join(member.top_brands),
                    "|".join(member.top_categories),
                    ";".join(plates[0] if plates else ()),
                )
            )
            written += 1
    return written
