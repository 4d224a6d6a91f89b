"""API keys and roles for the worker's and the gateway's HTTP endpoints.

A key is 32 random bytes, shown once when it is created (``mallstream keys create``) and
stored only as its SHA-256 in the keys file (``auth.keys_file``, or the file
``$MALLSTREAM_KEYS_FILE`` names). A key is random, so a plain hash is as good as a slow
one: nobody can guess their way back to it. Every worker and gateway reads the same file
and re-reads it when it changes, so a revoked key stops working at once.

A request presents its key as ``Authorization: Bearer <key>``, as the password of HTTP
basic auth (the user name is not checked: put the key's name there), or in the header
``auth.secret_header`` (``X-Api-Key``); the last two are what people counters and cameras
can be configured to send. No credentials or a key that is unknown or revoked is 401; a
key whose role does not allow the request is 403. Both are counted.

The worker also keeps an admin key for the ``mallstream`` command on the same machine in
``local.key`` beside the keys file (mode 0600), so ``mallstream member``, ``sql`` and
``loyalty`` work without setup; whoever can read that file can read the worker's state
directory anyway. ``auth.local_key: false`` turns it off.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, get_args

import msgspec

from .settings import KEYS_FILE_ENV, Auth, Role, Settings, read_secret

log = logging.getLogger(__name__)

#: Every role and what it may do. Counter staff can be limited to zones (their counters).
PERMISSIONS: dict[str, frozenset[str]] = {
    "kiosk": frozenset({"member_by_card"}),  # a member reads their own card, presenting it at the kiosk
    "call_centre": frozenset({"member"}),
    "counter_staff": frozenset({"board", "ack"}),
    "supervisor": frozenset({"member", "board", "ack", "operate", "schedule", "stats"}),
    "till": frozenset({"authorise"}),
    "analyst": frozenset({"sql", "stats"}),
    "device": frozenset({"push"}),
    "admin": frozenset({"member", "board", "ack", "operate", "schedule", "stats", "authorise", "sql", "push", "admin"}),
}
ROLES: tuple[str, ...] = get_args(Role)
assert set(ROLES) == set(PERMISSIONS)

#: The environment variable the ``mallstream`` command takes its key from (else ``local.key``).
API_KEY_ENV = "MALLSTREAM_API_KEY"
LOCAL_KEY_FILE = "local.key"
_PREFIX = "msk_"
#: Sent with a 401, so a browser asks for a user name and a key (the board's staff log in that way).
CHALLENGE = {"WWW-Authenticate": 'Basic realm="mallstream", charset="UTF-8"'}


class KeyRecord(msgspec.Struct, frozen=True):
    """One key as the keys file keeps it: never the key itself."""

    key_id: str
    name: str
    role: str
    sha256: str
    created_at: str
    zones: tuple[str, ...] = ()
    revoked_at: str | None = None


class KeysFile(msgspec.Struct):
    keys: list[KeyRecord] = []


@dataclass(frozen=True)
class Principal:
    """Who a request is: the key's name, its role and, for counter staff, the zones whose alerts they handle."""

    name: str
    role: str
    zones: frozenset[str] = frozenset()

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]

    def sees_zone(self, zone: str | None) -> bool:
        """Counter staff see their own zones' alerts; a key without zones sees all."""
        return not self.zones or zone in self.zones


class Refused(Exception):
    """A request refused: 401 (no or wrong credentials) or 403 (the role does not allow it)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason

    @property
    def counter(self) -> str:
        return {401: "auth_refused_401", 403: "auth_refused_403"}[self.status]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return _PREFIX + secrets.token_urlsafe(32)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _private_write(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically (a reader sees the old or the new file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


class KeyStore:
    """The keys file: verify presented keys (re-reading the file when it changes), create and revoke keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._by_digest: dict[str, KeyRecord] = {}

    @classmethod
    def of(cls, settings: Settings) -> KeyStore:
        return cls(settings.resolve(settings.auth.keys_path()))

    # -- reading ------------------------------------------------------------------------------

    def records(self) -> list[KeyRecord]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return msgspec.json.decode(data, type=KeysFile).keys
        except msgspec.DecodeError as exc:
            raise ValueError(f"{self.path}: not a keys file: {exc}") from None

    def verify(self, key: str) -> Principal | None:
        """The principal of an active key, or None for an unknown or revoked one."""
        self._refresh()
        record = self._by_digest.get(digest(key))
        if record is None or record.revoked_at is not None:
            return None
        return Principal(record.name, record.role, frozenset(record.zones))

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # written by replacing: a new inode
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            try:
                self._by_digest = {record.sha256: record for record in self.records()}
            except ValueError as exc:  # a damaged file admits nobody, rather than whoever it admitted before
                log.error("%s; every key is refused until it is repaired", exc)
                self._by_digest = {}
            self._seen = seen

    # -- changing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _changing(self) -> Iterator[list[KeyRecord]]:
        """The records, locked against other writers; what the block leaves in the list is written back."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self.records()
            before = list(records)
            yield records
            if records != before or not self.path.exists():
                _private_write(self.path, msgspec.json.format(msgspec.json.encode(KeysFile(records))) + b"\n")

    def create(self, name: str, role: str, zones: Iterable[str] = ()) -> tuple[KeyRecord, str]:
        """A new key; returns its record and the key, which is not stored anywhere and cannot be shown again."""
        zones = tuple(dict.fromkeys(zones))
        if role not in PERMISSIONS:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if zones and role != "counter_staff":
            raise ValueError("only counter_staff keys are limited to zones")
        if not name or any(c in name for c in ":\n\r"):
            raise ValueError("a key needs a name without ':' or line breaks")
        with self._changing() as records:
            if any(r.name == name and r.revoked_at is None for r in records):
                raise ValueError(f"an active key is named {name!r}; revoke it first or choose another name")
            record, key = _minted(name, role, zones)
            records.append(record)
        return record, key

    def revoke(self, name_or_id: str) -> list[KeyRecord]:
        """Revoke the active keys with this name or id; returns them (empty: none matched)."""
        with self._changing() as records:
            return _revoked(records, name_or_id)

    def ensure_local_key(self) -> str:
        """The admin key of this machine's ``mallstream`` command, created on first use (``local.key``, mode 0600).

        Several workers starting at once agree on one key: the check and the change are under the file's lock.
        """
        path = self.path.with_name(LOCAL_KEY_FILE)
        with self._changing() as records:
            with contextlib.suppress(FileNotFoundError):
                key = path.read_text().strip()
                if any(r.sha256 == digest(key) and r.revoked_at is None for r in records):
                    return key
            name = f"local@{socket.gethostname()}"
            _revoked(records, name)
            record, key = _minted(name, "admin", ())
            records.append(record)
            _private_write(path, key.encode() + b"\n")
        return key


def _minted(name: str, role: str, zones: tuple[str, ...]) -> tuple[KeyRecord, str]:
    key = new_key()
    return KeyRecord(
        key_id=secrets.token_hex(6), name=name, role=role, sha256=digest(key), created_at=_now(), zones=zones
    ), key


def _revoked(records: list[KeyRecord], name_or_id: str) -> list[KeyRecord]:
    """Mark the active records with this name or id revoked, in place; returns them."""
    revoked = []
    for index, record in enumerate(records):
        if record.revoked_at is None and name_or_id in (record.name, record.key_id):
            records[index] = msgspec.structs.replace(record, revoked_at=_now())
            revoked.append(records[index])
    return revoked


class KeyLookup(Protocol):
    def verify(self, key: str) -> Principal | None: ...


class OneKey:
    """A single key that lives only in memory: an in-process gateway and the emulated devices pushing to it."""

    def __init__(self, principal: Principal) -> None:
        self.key = new_key()
        self.principal = principal

    def verify(self, key: str) -> Principal | None:
        return self.principal if hmac.compare_digest(digest(key), digest(self.key)) else None


class Gatekeeper:
    """Checks a request's credentials against the keys and a permission, counting what it refuses."""

    def __init__(self, keys: KeyLookup, auth: Auth, counters: Counter | None = None) -> None:
        self.keys = keys
        self.anonymous_role = auth.anonymous_role
        self.secret_header = auth.secret_header
        #: auth_refused_401 / auth_refused_403, and whatever else the owner counts there
        self.refused: Counter = Counter() if counters is None else counters

    def presented(self, headers: Mapping[str, str]) -> str | None:
        """The key a request carries: bearer token, basic-auth password, or the secret header.

        None when it carries none; a malformed one is an empty key, refused as wrong, never taken as none.
        """
        scheme, _, value = (headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return ""
        return (headers.get(self.secret_header) or "").strip() or None

    def principal(self, headers: Mapping[str, str]) -> Principal:
        """Who the request is; raises :class:`Refused` (401) for none or a wrong key."""
        key = self.presented(headers)
        if key is None:
            if self.anonymous_role is not None:
                return Principal("anonymous", self.anonymous_role)
            raise Refused(
                401,
                f"credentials required: an API key as bearer token, basic-auth password or {self.secret_header} header",
            )
        principal = self.keys.verify(key)
        if principal is None:
            raise Refused(401, "unknown or revoked API key")
        return principal

    def admit(
        self, headers: Mapping[str, str], permissions: Iterable[str], also: Callable[[Principal], None] | None = None
    ) -> Principal:
        """The principal, if it may do one of ``permissions`` (and ``also`` does not raise); raises (and counts)
        :class:`Refused` otherwise."""
        try:
            principal = self.principal(headers)
            permissions = tuple(permissions)
            if not any(principal.may(permission) for permission in permissions):
                raise Refused(403, f"role {principal.role} may not do this (needs {' or '.join(permissions)})")
            if also is not None:
                also(principal)
            return principal
        except Refused as refusal:
            self.refused[refusal.counter] += 1
            raise


def command_key(settings: Settings) -> str | None:
    """The key the ``mallstream`` command sends: ``$MALLSTREAM_API_KEY`` (or its ``_FILE``), else ``local.key``."""
    key = read_secret(API_KEY_ENV)
    if key:
        return key.strip()
    with contextlib.suppress(OSError):
        return KeyStore.of(settings).path.with_name(LOCAL_KEY_FILE).read_text().strip() or None
    return None


#: What the command adds when a worker refuses it for want of a key.
NO_KEY_HINT = (
    f"the worker wants an API key: set ${API_KEY_ENV} (mallstream keys create), or run as the user "
    "whose worker keeps local.key beside the keys file"
)


def command_headers(settings: Settings) -> dict[str, str]:
    key = command_key(settings)
    return {"Authorization": f"Bearer {key}"} if key else {}


__all__ = ["API_KEY_ENV", "KEYS_FILE_ENV", "Gatekeeper", "KeyStore", "Principal", "Refused", "command_headers"]
