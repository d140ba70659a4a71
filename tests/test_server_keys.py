"""API keys: hashed at rest, scoped, revocable; `engram keys create|ls|revoke`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engram.cli import app
from engram.errors import NotFoundError, ValidationError
from engram.scope import Scope
from engram.server.access import ForbiddenError, Principal
from engram.store.keys import KeyScope, hash_token, parse_owner
from engram.store.sqlite_keys import SQLiteKeyStore

runner = CliRunner()


def test_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path / "keys.db")
    token, key = store.create("alice", "read")
    assert token.startswith("egk_") and len(token) > 40
    assert store.authenticate(token) == key
    raw = (tmp_path / "keys.db").read_bytes()
    assert token.encode() not in raw
    rows = sqlite3.connect(tmp_path / "keys.db").execute("SELECT token_sha256 FROM api_keys")
    assert [r[0] for r in rows] == [hash_token(token)]


def test_owner_scope_and_revocation(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path / "keys.db")
    _, alice = store.create("alice")
    _, bot = store.create("agent:planner", "read")
    admin_token, admin = store.create(None, "admin")
    assert (alice.owner, alice.scope) == ("user:alice", KeyScope.WRITE)
    assert (bot.owner, admin.owner) == ("agent:planner", None)
    assert store.authenticate("egk_not-a-key") is None
    assert store.authenticate("") is None
    assert store.revoke(admin.id).revoked
    assert store.authenticate(admin_token) is None
    assert store.revoke(admin.id).revoked  # idempotent
    assert {k.id for k in store.list(include_revoked=False)} == {alice.id, bot.id}
    assert {k.id for k in store.list()} == {alice.id, bot.id, admin.id}
    with pytest.raises(NotFoundError):
        store.revoke("nope")


@pytest.mark.parametrize(
    "owner, scope",
    [(None, "write"), ("alice", "admin"), ("alice", "root"), ("", "read"), ("user:", "read")],
)
def test_invalid_keys_are_refused(tmp_path: Path, owner: str | None, scope: str) -> None:
    with pytest.raises(ValidationError):
        SQLiteKeyStore(tmp_path / "keys.db").create(owner, scope)


def test_parse_owner() -> None:
    assert parse_owner("alice") == "user:alice"
    assert parse_owner("user:alice") == "user:alice"
    assert parse_owner("agent:bot") == "agent:bot"
    assert parse_owner("team:x") == "user:team:x"  # not a known prefix: a user id with a colon


@pytest.mark.parametrize(
    "value, message",
    [
        ("alice", "must name an owner as user:NAME or agent:NAME, got 'alice'"),
        ("team:x", "must name an owner as user:NAME or agent:NAME"),
        ("user:", "cube must be a non-empty string"),
        ("agent:" + "x" * 129, "cube must be a non-empty string of at most 128"),
        ("user:a\ud800", "cube is not valid UTF-8"),
        (None, "cube must be a string such as user:NAME or agent:NAME, got None"),
        (["user:a"], "must be a string such as"),
    ],
)
def test_one_owner_parser_for_every_surface(value: object, message: str) -> None:
    """Scope.parse: what mounts, fuse, bundles and keys (with bare names) accept."""
    assert Scope.parse("user:alice", "cube") == "user:alice"
    assert Scope.parse("agent:team", "cube") == "agent:team"
    with pytest.raises(ValidationError, match=message):
        Scope.parse(value, "cube")
    with pytest.raises(ValidationError, match="owner must be a string such as alice"):
        parse_owner(5)


def test_principal_owner_resolution() -> None:
    alice = Principal(scope=KeyScope.WRITE, owner="user:alice", key_id="k1")
    assert alice.owner_kwargs(None, None) == {"user_id": "alice", "agent_id": None}
    assert alice.owner_kwargs(None, "planner") == {"user_id": "alice", "agent_id": "planner"}
    with pytest.raises(NotFoundError):
        alice.owner_kwargs("bob", None)
    bot = Principal(scope=KeyScope.READ, owner="agent:bot", key_id="k2")
    assert bot.owner_kwargs(None, None) == {"user_id": None, "agent_id": "bot"}
    for user, agent in (("bot", None), (None, "other")):
        with pytest.raises(NotFoundError):
            bot.owner_kwargs(user, agent)
    with pytest.raises(ForbiddenError):
        bot.require(KeyScope.WRITE)
    local = Principal.local("user:me")
    assert local.owner_kwargs(None, None) == {"user_id": "me"}
    assert local.by_id_kwargs("x", None) == {"user_id": "x", "agent_id": None}


def _cli(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def test_keys_cli(tmp_path: Path) -> None:
    created = _cli(tmp_path, "--json", "keys", "create", "--owner", "alice", "--scope", "read")
    assert created.exit_code == 0, created.output
    payload = json.loads(created.stdout)
    assert set(payload) == {"key", "id", "owner", "scope", "reads"}
    assert (payload["owner"], payload["scope"]) == ("alice", "read")
    assert SQLiteKeyStore(tmp_path / "keys.db").authenticate(payload["key"]) is not None

    human = _cli(tmp_path, "keys", "create", "--owner", "agent:bot")
    assert human.exit_code == 0 and "egk_" in human.stdout
    listed = json.loads(_cli(tmp_path, "--json", "keys", "ls").stdout)
    assert {(k["owner"], k["scope"]) for k in listed} == {("alice", "read"), ("agent:bot", "write")}
    assert all("egk_" not in json.dumps(k) for k in listed)  # never the tokens

    revoked = _cli(tmp_path, "keys", "revoke", payload["id"])
    assert revoked.exit_code == 0
    assert SQLiteKeyStore(tmp_path / "keys.db").authenticate(payload["key"]) is None
    assert len(json.loads(_cli(tmp_path, "--json", "keys", "ls").stdout)) == 1
    assert len(json.loads(_cli(tmp_path, "--json", "keys", "ls", "--all").stdout)) == 2

    bad = _cli(tmp_path, "--json", "keys", "create", "--scope", "write")
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["code"] == "invalid_input"
    missing = _cli(tmp_path, "keys", "revoke", "nope")
    assert missing.exit_code == 1
