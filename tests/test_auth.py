"""API keys on a real keys file: stored hashed and private, revoked at once, one local key however many
workers start together; what a request may present; the `keys` command."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from mallstream.auth import Gatekeeper, KeyStore, Refused
from mallstream.settings import Auth
from tests.conftest import EXAMPLE_CONFIG


def test_keys_are_stored_only_hashed_in_a_private_file_and_revoked_at_once(tmp_path):
    store = KeyStore(tmp_path / "auth" / "keys.json")
    record, key = store.create("alice", "supervisor")
    assert key.startswith("msk_") and len(key) > 40
    text = store.path.read_text()
    assert key not in text and record.sha256 in text
    assert store.path.stat().st_mode & 0o777 == 0o600 and store.path.parent.stat().st_mode & 0o777 == 0o700
    assert store.verify(key).role == "supervisor" and store.verify(key[:-1]) is None
    other = KeyStore(store.path)  # another process's view of the same file
    assert other.verify(key).name == "alice"
    store.revoke("alice")
    assert other.verify(key) is None
    with pytest.raises(ValueError, match="only counter_staff keys are limited to zones"):
        store.create("bob", "supervisor", ["S101"])
    with pytest.raises(ValueError, match="role must be one of"):
        store.create("bob", "janitor")
    store.create("bob", "counter_staff", ["S101"])
    with pytest.raises(ValueError, match="an active key is named 'bob'"):
        store.create("bob", "kiosk")
    store.path.write_text("{damaged")
    assert other.verify(key) is None  # a damaged file admits nobody


def _local_key(path: str) -> str:
    return KeyStore(Path(path)).ensure_local_key()


def test_workers_starting_together_agree_on_one_local_key(tmp_path):
    path = str(tmp_path / "keys.json")
    with ProcessPoolExecutor(4) as pool:
        keys = set(pool.map(_local_key, [path] * 8))
    assert len(keys) == 1
    store = KeyStore(Path(path))
    [key] = keys
    assert store.verify(key).role == "admin" and (tmp_path / "local.key").stat().st_mode & 0o777 == 0o600
    assert [r.name for r in store.records() if r.revoked_at is None] == [store.verify(key).name]


def test_a_key_is_taken_as_bearer_token_basic_auth_password_or_secret_header(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    _, key = store.create("cam-1", "device")
    gate = Gatekeeper(store, Auth())
    basic = base64.b64encode(f"cam-1:{key}".encode()).decode()
    for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": f"Basic {basic}"}, {"X-Api-Key": key}):
        assert gate.admit(headers, ("push",)).name == "cam-1"
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Basic !!!"}, 401),
        ({"X-Api-Key": "x"}, 401),
        ({"Authorization": f"Bearer {key}"}, 403),
    ):
        with pytest.raises(Refused) as refused:
            gate.admit(headers, ("sql",) if status == 403 else ("push",))
        assert refused.value.status == status
    assert gate.refused == {"auth_refused_401": 3, "auth_refused_403": 1}
    anonymous = Gatekeeper(store, Auth(anonymous_role="kiosk"))
    assert anonymous.admit({}, ("member_by_card",)).role == "kiosk"
    for wrong in ({"X-Api-Key": "x"}, {"Authorization": "Basic !!!"}, {"Authorization": "Bearer"}):
        with pytest.raises(Refused):  # a wrong or malformed key is still wrong, not anonymous
            anonymous.admit(wrong, ("member_by_card",))


def test_the_keys_command_prints_a_key_once_and_lists_and_revokes_without_showing_it(tmp_path):
    def keys(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mallstream.cli", "-c", str(EXAMPLE_CONFIG), "keys", *args],
            capture_output=True,
            text=True,
            env={"MALLSTREAM_KEYS_FILE": str(tmp_path / "k.json"), "PATH": "/usr/bin:/bin"},
            check=False,
        )

    made = keys("create", "--role", "counter_staff", "--name", "lancome", "--zone", "S101")
    key = made.stdout.strip()
    assert made.returncode == 0 and key.startswith("msk_") and "shown only now" in made.stderr
    assert KeyStore(tmp_path / "k.json").verify(key).zones == {"S101"}
    listed = keys("list")
    assert "lancome" in listed.stdout and "S101" in listed.stdout and key not in listed.stdout
    assert keys("create", "--role", "admin", "--name", "lancome").returncode == 2
    assert keys("revoke", "lancome").returncode == 0 and keys("revoke", "lancome").returncode == 1
    assert KeyStore(tmp_path / "k.json").verify(key) is None
    assert json.loads((tmp_path / "k.json").read_text())["keys"][0]["revoked_at"]
