"""Personal data kept out of the analytics tables (docs/data-map.md says which field goes where).

ClickHouse holds member ids, never names, phone numbers or card numbers:

* a tag's EPC (a member card is an RFID tag) and a car's plate are stored as a **keyed hash**
  (HMAC-SHA256 under ``privacy.hash_key_env``, else a key file made at first use): the same
  tag or plate always gives the same value, so counting and joining still work, but without
  the key nobody can go from the value back to the card, or try every plate of a city;
* alert messages are stored with the member id where the delivered message named the member;
* runs of digits that look like a phone number (in staff notes) or a payment card number (in
  dead-lettered payloads) are masked to their last four digits.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from .settings import Settings, read_secret

#: Hex digits of a keyed hash kept: 128 bits, collisions never in a mall's lifetime.
HASH_HEX = 32


class Pseudonym:
    """The keyed hash that stands in for an identifier in ClickHouse."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the hash key must be at least 16 bytes")
        self._key = key

    def __call__(self, value: str) -> str:
        return hmac.new(self._key, value.strip().upper().encode(), hashlib.sha256).hexdigest()[:HASH_HEX]

    def __repr__(self) -> str:
        return "Pseudonym(<key hidden>)"

    @classmethod
    def of(cls, settings: Settings) -> Pseudonym:
        """The key from ``$<hash_key_env>`` (or its ``_FILE``), else from ``privacy.hash_key_file``, made if missing."""
        key = read_secret(settings.privacy.hash_key_env)
        if key:
            return cls(key.encode())
        return cls(_key_file(settings.resolve(settings.privacy.hash_key_file)))


def _key_file(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:  # two workers starting at once: the first one's key wins
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


#: standing on its own: the digits of a receipt or order id (S101-T1-20261121-0042) are not a phone number
_PHONE = re.compile(r"(?<![\w\-])\+?\d(?:[ \-.]?\d){6,14}(?![\w\-])")
_CARD = re.compile(r"(?<!\d)\d(?:[ \-]?\d){12,18}(?!\d)")


def _last_four(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_phone_numbers(text: str) -> str:
    """Runs of 7 to 15 digits standing on their own (spaces, dashes and dots between allowed): all but the last
    four masked."""
    return _PHONE.sub(_last_four, text)


def _luhn(digits: str) -> bool:
    total = 0
    for index, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def mask_card_numbers(text: str) -> str:
    """Payment card numbers (13 to 19 digits passing the Luhn check) masked to their last four digits.

    Other long numbers (timestamps in milliseconds, sequence numbers) mostly fail the check and stay.
    """

    def mask(match: re.Match[str]) -> str:
        return _last_four(match) if _luhn(re.sub(r"\D", "", match.group())) else match.group()

    return _CARD.sub(mask, text)
