"""Page cursors are opaque and owner-bound: sealed with the store's secret, they reveal
nothing of the store-wide row counter, and one replayed by another owner or altered is
refused cleanly (ValidationError; 422 over REST, a tool error over MCP, exit 2 in the CLI)."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from typer.testing import CliRunner, Result

import engram.secret
from _server_helpers import make_keys
from engram import Memory
from engram.cli import app as cli_app
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.errors import ConfigError, ValidationError
from engram.scope import CURSOR_PREFIX, CursorCodec
from engram.secret import SECRET_BYTES, load_or_create_secret, secret_path
from engram.server.access import Principal
from engram.server.app import create_app
from engram.server.mcp_tools import build_mcp_server
from engram.store.sqlite_keys import SQLiteKeyStore

SECRET = bytes(range(32))
ALICE, BOB = "user:alice", "user:bob"


def _b64(cursor: str) -> bytes:
    text = cursor.removeprefix(CURSOR_PREFIX)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _flip(cursor: str, at: int) -> str:
    """`cursor` with the character at `at` replaced by another base64url character."""
    new = "A" if cursor[at] != "A" else "B"
    return cursor[:at] + new + cursor[at + 1 :]


def _two_pages(memory: Memory, user: str) -> str:
    for i in range(3):
        memory.add(f"{user} note {i}", user_id=user)
    cursor = memory.get_all(user_id=user, limit=1).next_cursor
    assert cursor is not None
    return cursor


# -- the codec ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [0, 1, 41, 123_456_789, 2**63 - 1])
def test_cursor_roundtrips_for_its_owner_only(key: int) -> None:
    codec = CursorCodec(SECRET)
    cursor = codec.encode(key, ALICE)
    assert cursor is not None
    assert codec.decode(cursor, ALICE) == key
    with pytest.raises(ValidationError, match="not one Engram issued for this owner"):
        codec.decode(cursor, BOB)
    with pytest.raises(ValidationError, match="not one Engram issued"):
        CursorCodec(bytes(32)).decode(cursor, ALICE)  # another store's secret


def test_cursor_reveals_nothing_of_the_row_key() -> None:
    codec = CursorCodec(SECRET)
    key = 4242
    cursors = {codec.encode(key, ALICE) for _ in range(50)}
    assert len(cursors) == 50  # a fresh nonce each time: equal keys are not linkable
    lengths = {len(str(codec.encode(k, ALICE))) for k in (0, 7, 4242, 2**40, 2**63 - 1)}
    assert len(lengths) == 1  # the length says nothing of the key's size
    for cursor in cursors:
        assert cursor is not None and cursor.startswith(CURSOR_PREFIX)
        raw = _b64(cursor)
        assert str(key) not in cursor and str(key).encode() not in raw
        assert key.to_bytes(8, "big") not in raw and b"k4242" not in raw
        legacy = base64.urlsafe_b64encode(b"k4242").decode().rstrip("=")
        assert legacy not in cursor


def test_every_altered_character_is_refused() -> None:
    codec = CursorCodec(SECRET)
    cursor = codec.encode(99, ALICE)
    assert cursor is not None
    for at in range(len(cursor)):
        with pytest.raises(ValidationError, match="not one Engram issued"):
            codec.decode(_flip(cursor, at), ALICE)
    for bad in (cursor[:-1], cursor + "A", cursor[len(CURSOR_PREFIX) :], "", "c1", "c1" + "A" * 48):
        with pytest.raises(ValidationError, match="not one Engram issued"):
            codec.decode(bad, ALICE)
    with pytest.raises(ValidationError, match="must be a string"):
        codec.decode(99, ALICE)


def test_a_long_cursor_is_not_echoed_whole() -> None:
    with pytest.raises(ValidationError) as info:
        CursorCodec(SECRET).decode("x" * 10_000, ALICE)
    assert len(str(info.value)) < 200


# -- the store's secret -----------------------------------------------------------------------


def test_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = secret_path(tmp_path / "engram.db")
    first = load_or_create_secret(path)
    assert len(first) == SECRET_BYTES and path.read_bytes() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_racing_processes_agree_on_one_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = secret_path(tmp_path / "engram.db")
    theirs = b"\x07" * SECRET_BYTES
    real_link = os.link

    def link_after_the_other_process(src: Path, dst: Path) -> None:
        dst.write_bytes(theirs)  # another process linked its secret first
        real_link(src, dst)

    monkeypatch.setattr(engram.secret.os, "link", link_after_the_other_process)
    assert load_or_create_secret(path) == theirs
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_unwritable_place_gives_a_per_process_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(src: Path, dst: Path) -> None:
        raise PermissionError(13, "read-only file system")

    monkeypatch.setattr(engram.secret.os, "link", refuse)
    path = secret_path(tmp_path / "engram.db")
    with caplog.at_level(logging.WARNING, logger="engram"):
        first, second = load_or_create_secret(path), load_or_create_secret(path)
    assert len(first) == SECRET_BYTES and first != second
    assert not path.exists() and "cursors last one process" in caplog.text


def test_corrupt_secret_is_refused_loudly(tmp_path: Path) -> None:
    path = secret_path(tmp_path / "engram.db")
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="corrupt"):
        load_or_create_secret(path)


# -- through Memory, REST, MCP and the CLI -----------------------------------------------------


def test_memory_cursor_is_owner_bound_and_survives_reopening(
    tmp_path: Path, embedder: Embedder
) -> None:
    with Memory(home=tmp_path, embedder=embedder) as memory:
        cursor = _two_pages(memory, "alice")
        _two_pages(memory, "bob")
        with pytest.raises(ValidationError, match="not one Engram issued for this owner"):
            memory.get_all(user_id="bob", cursor=cursor)
        with pytest.raises(ValidationError, match="not one Engram issued for this owner"):
            memory.get_all(user_id="nobody", cursor=cursor)  # even an owner with no cube
        with pytest.raises(ValidationError):
            memory.get_all(user_id="alice", cursor=_flip(cursor, 10))
        expected = [i.id for i in memory.get_all(user_id="alice", cursor=cursor).items]
    with Memory(home=tmp_path, embedder=embedder) as reopened:  # the secret is on disk
        assert [i.id for i in reopened.get_all(user_id="alice", cursor=cursor).items] == expected


def test_the_secret_is_made_only_when_a_cursor_is(tmp_path: Path, embedder: Embedder) -> None:
    with Memory(home=tmp_path, embedder=embedder) as memory:
        path = secret_path(memory.config.sqlite_path)
        memory.add("one note", user_id="alice")
        assert memory.get_all(user_id="alice").next_cursor is None
        assert not path.exists()
        _two_pages(memory, "alice")
        assert len(path.read_bytes()) == SECRET_BYTES


def test_rest_refuses_another_keys_cursor(tmp_path: Path, embedder: Embedder) -> None:
    with Memory(home=tmp_path, embedder=embedder) as memory:
        keys = make_keys(SQLiteKeyStore(tmp_path / "keys.db"))
        alice_cursor = _two_pages(memory, "alice")
        _two_pages(memory, "bob")
        app = create_app(
            memory, SQLiteKeyStore(tmp_path / "keys.db"), ServerConfig(rate_limit_per_s=0)
        )
        with TestClient(app) as client:
            own = client.get("/v1/memories", params={"cursor": alice_cursor}, headers=keys.alice)
            assert own.status_code == 200 and len(own.json()["items"]) == 2
            for cursor in (alice_cursor, _flip(alice_cursor, 20)):
                response = client.get("/v1/memories", params={"cursor": cursor}, headers=keys.bob)
                assert response.status_code == 422, response.text
                error = response.json()["error"]
                assert error["code"] == "invalid_input" and "cursor" in error["message"]
                assert "bob note" not in response.text


def test_mcp_refuses_another_owners_cursor(tmp_path: Path, embedder: Embedder) -> None:
    with Memory(home=tmp_path, embedder=embedder) as memory:
        cursor = _two_pages(memory, "alice")
        _two_pages(memory, "bob")
        server = build_mcp_server(memory, fallback=Principal.local())

        async def session() -> None:
            async with Client(server) as client:
                mine = await client.call_tool(
                    "list_memories", {"user_id": "alice", "cursor": cursor}
                )
                assert not mine.is_error and len(mine.structured_content["items"]) == 2
                other = await client.call_tool(
                    "list_memories", {"user_id": "bob", "cursor": cursor}
                )
                assert other.is_error
                text = " ".join(getattr(part, "text", "") for part in other.content)
                error = json.loads(text[text.index("{") :])["error"]
                assert error["code"] == "invalid_input" and "cursor" in error["message"]

        anyio.run(session)


def test_cli_cursor_of_another_owner_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "store"

    def run(*args: str) -> Result:
        return runner.invoke(cli_app, ["--home", str(home), *args])

    for user in ("alice", "bob"):
        for i in range(2):
            assert run("add", f"{user} fact {i}", "-u", user).exit_code == 0
    page = run("--json", "list", "-u", "alice", "--limit", "1")
    cursor = json.loads(page.stdout)["next_cursor"]
    assert run("--json", "list", "-u", "alice", "--cursor", cursor).exit_code == 0
    refused = run("--json", "list", "-u", "bob", "--cursor", cursor)
    assert refused.exit_code == 2
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "invalid_input"
    assert "not one Engram issued for this owner" in error["message"]
