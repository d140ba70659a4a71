"""API keys on both backends through one contract: SQLite's keys.db and PostgreSQL's
tables hold hashes only, scope, grant and revoke alike; on PostgreSQL two processes'
key stores (two servers) see each other's keys and revocations at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engram.config import load_config
from engram.errors import NotFoundError, ValidationError
from engram.store.keys import KeyScope, KeyStore, hash_token, open_keys
from engram.store.postgres.keys import PostgresKeyStore
from engram.store.sqlite_keys import SQLiteKeyStore


@pytest.fixture(params=["sqlite", "postgres"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    made: KeyStore
    if request.param == "postgres":
        made = PostgresKeyStore(request.getfixturevalue("pg_url"))
    else:
        made = SQLiteKeyStore(tmp_path / "keys.db")
    try:
        yield made
    finally:
        made.close()


def test_create_authenticate_list_and_revoke(keys: KeyStore) -> None:
    token, alice = keys.create("alice", "read", reads=["agent:team", "bob"])
    _, bot = keys.create("agent:planner")
    admin_token, admin = keys.create(None, "admin")
    assert alice.reads == ("agent:team", "user:bob") and bot.scope is KeyScope.WRITE
    assert keys.authenticate(token) == alice == keys.get(alice.id)
    assert keys.authenticate(token + "x") is None and keys.authenticate("") is None
    assert keys.hashes()[alice.id] == hash_token(token)
    assert [k.id for k in keys.list()] == [alice.id, bot.id, admin.id]  # by creation
    assert keys.revoke(admin.id).revoked and keys.revoke(admin.id).revoked  # idempotent
    assert keys.authenticate(admin_token) is None
    assert {k.id for k in keys.list(include_revoked=False)} == {alice.id, bot.id}
    with pytest.raises(NotFoundError):
        keys.revoke("nope")
    with pytest.raises(ValidationError):
        keys.create("alice", "write", reads=["user:alice"])
    assert len(keys.list()) == 3  # the refused one wrote nothing


def test_a_copied_key_keeps_its_id_hash_times_and_grants(keys: KeyStore, tmp_path: Path) -> None:
    source = SQLiteKeyStore(tmp_path / "source-keys.db")
    token, key = source.create("alice", "write", reads=["agent:team"])
    revoked_token, gone = source.create("bob", "read")
    gone = source.revoke(gone.id)
    for made in (key, gone):
        assert keys.insert(made, source.hashes()[made.id])
    assert not keys.insert(key, "another hash")  # an id is written once
    assert keys.get(key.id) == key and keys.get(gone.id) == gone
    assert keys.authenticate(token) == key and keys.authenticate(revoked_token) is None
    source.close()


def test_postgres_keys_are_shared_by_every_process(pg_url: str, tmp_path: Path) -> None:
    config = load_config(home=tmp_path / "a", database_url=pg_url)
    a, b = open_keys(config), open_keys(load_config(home=tmp_path / "b", database_url=pg_url))
    try:
        assert isinstance(a, PostgresKeyStore) and not (tmp_path / "a" / "keys.db").exists()
        token, key = a.create("alice")
        assert b.authenticate(token) == key
        b.revoke(key.id)
        assert a.authenticate(token) is None
    finally:
        a.close()
        b.close()


def test_postgres_keys_hold_only_hashes(pg_url: str) -> None:
    keys = PostgresKeyStore(pg_url)
    try:
        token, _ = keys.create("alice")
    finally:
        keys.close()
    with psycopg.connect(pg_url) as conn:
        rows: list[Any] = conn.execute("SELECT * FROM api_keys").fetchall()
        assert token not in repr(rows) and hash_token(token) in repr(rows)
        # the application role reads and writes them (every server authenticates)
        conn.execute("SET ROLE engram_app")
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (1,)


def test_the_sqlite_default_is_the_homes_keys_db(tmp_path: Path) -> None:
    keys = open_keys(load_config(home=tmp_path))
    try:
        assert isinstance(keys, SQLiteKeyStore) and keys.path == tmp_path / "keys.db"
    finally:
        keys.close()
