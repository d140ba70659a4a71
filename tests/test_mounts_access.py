"""A mount cannot widen access: over REST and MCP a key reads a mounted cube only when it
was granted it (`engram keys create --read`), a cube it may not read is reported exactly as
one not mounted, and no key ever writes a mounted or granted cube. Then the CLI verbs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from typer.testing import CliRunner

from _server_helpers import bearer
from engram import Memory, ValidationError
from engram.cli import app
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.server.access import Principal
from engram.server.app import create_app
from engram.server.mcp_tools import build_mcp_server
from engram.store.keys import KeyStore
from engram.store.sqlite_keys import SQLiteKeyStore

SECRET = "The team vault code is 8812-KESTREL."
TEAM = ["The team standup is at 9:30 in room Kepler.", SECRET]
ALICE = "Alice's standup notes live in Notion."


@pytest.fixture
def mem(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    with Memory(home=tmp_path, embedder=embedder) as m:
        for text in TEAM:
            m.add(text, agent_id="team")
        m.add(ALICE, user_id="alice")
        m.add("Bob's own note about the vault.", user_id="bob")
        yield m


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return SQLiteKeyStore(tmp_path / "keys.db")


@pytest.fixture
def client(mem: Memory, keys: KeyStore) -> Iterator[TestClient]:
    server = create_app(mem, keys, ServerConfig(rate_limit_per_s=0))
    with TestClient(server, base_url="http://localhost") as c:
        yield c


def _search(client: TestClient, key: dict[str, str], **body: Any) -> Any:
    answer = client.post(
        "/v1/search", json={"query": "team vault code standup", **body}, headers=key
    )
    return answer.status_code, answer.json()


def test_a_key_reads_a_mounted_cube_only_when_granted(
    client: TestClient, keys: KeyStore, mem: Memory
) -> None:
    plain = bearer(keys.create("alice", "write")[0])
    granted = bearer(keys.create("alice", "read", reads=["agent:team"])[0])
    writer = bearer(keys.create("alice", "write", reads=["agent:team"])[0])
    before = _search(client, plain, k=5)
    assert before[0] == 200 and {h["cube"] for h in before[1]["hits"]} == {"user:alice"}

    # mounting needs a key that may read the cube; otherwise it is as if there were none
    refused = client.post("/v1/mounts", json={"cube": "agent:team"}, headers=plain)
    absent = client.post("/v1/mounts", json={"cube": "agent:nobody"}, headers=plain)
    assert refused.status_code == absent.status_code == 404
    assert (
        refused.json()["error"]["message"].replace("team", "nobody")
        == (absent.json()["error"]["message"])
    )
    assert mem.mounts(user_id="alice") == []
    mounted = client.post("/v1/mounts", json={"cube": "agent:team"}, headers=writer)
    assert mounted.status_code == 201, mounted.text
    assert mounted.json()["cube"] == "agent:team"

    # the key without the grant: the same answer as before the mount, to the byte
    assert _search(client, plain, k=5) == before
    assert SECRET not in json.dumps(_search(client, plain, k=5))
    assert client.get("/v1/mounts", headers=plain).json() == {"mounts": []}
    named = _search(client, plain, cubes=["agent:team"])
    unknown = _search(client, plain, cubes=["agent:nobody"])
    assert named[0] == unknown[0] == 404
    assert json.dumps(named[1]).replace("team", "nobody") == json.dumps(unknown[1])
    gone = client.delete("/v1/mounts/agent:team", headers=plain)
    assert gone.status_code == 404 and mem.mounts(user_id="alice") != []

    # the key with the grant reads it, each hit naming its cube
    status, found = _search(client, granted, k=5)
    assert status == 200 and found["hits"][0]["memory"] == SECRET
    assert {h["cube"] for h in found["hits"]} == {"agent:team", "user:alice"}
    listed = client.get("/v1/mounts", headers=granted).json()["mounts"]
    assert [m["cube"] for m in listed] == ["agent:team"]
    only = _search(client, granted, cubes=["agent:team"], k=5)[1]["hits"]
    assert {h["cube"] for h in only} == {"agent:team"}

    # an admin key reads every mount of the owner it names
    admin = bearer(keys.create(None, "admin")[0])
    hits = _search(client, admin, user_id="alice", k=5)[1]["hits"]
    assert {h["cube"] for h in hits} == {"agent:team", "user:alice"}


def test_a_grant_never_writes_and_never_mounts_by_itself(
    client: TestClient, keys: KeyStore, mem: Memory
) -> None:
    writer = bearer(keys.create("alice", "write", reads=["agent:team"])[0])
    assert client.post("/v1/mounts", json={"cube": "agent:team"}, headers=writer).status_code == 201
    team = mem.get_all(agent_id="team").items
    target = team[1].id
    # a user key's agent_id narrows within its own owner: this lands in alice's cube
    added = client.post("/v1/memories", json={"text": "forged", "agent_id": "team"}, headers=writer)
    assert added.status_code == 201 and added.json()["items"][0]["provenance"]["owner"] == (
        "user:alice"
    )
    attempts = [
        client.patch(f"/v1/memories/{target}", json={"text": "forged"}, headers=writer),
        client.patch(
            f"/v1/memories/{target}",
            params={"agent_id": "team"},
            json={"text": "x"},
            headers=writer,
        ),
        client.delete(f"/v1/memories/{target}", params={"hard": "true"}, headers=writer),
        client.post(f"/v1/memories/{target}/restore", headers=writer),
        client.post("/v1/feedback", json={"query": "vault", "cited": [target]}, headers=writer),
    ]
    assert [a.status_code for a in attempts] == [404] * len(attempts), [a.text for a in attempts]
    assert mem.get_all(agent_id="team").items == team
    assert mem.mounts(agent_id="team") == []
    # granted but not mounted by its owner: nothing of the team reaches bob
    bob = bearer(keys.create("bob", "write", reads=["agent:team"])[0])
    status, body = _search(client, bob, k=5)
    assert status == 200 and {h["cube"] for h in body["hits"]} == {"user:bob"}
    assert _search(client, bob, cubes=["agent:team"])[0] == 404


def test_answer_over_rest_holds_to_the_grant(
    client: TestClient, keys: KeyStore, mem: Memory
) -> None:
    mem.config.answer.model = "engram-lm"
    mem.config.answer.max_tokens = 2
    mem.mount("agent:team", user_id="alice")  # by the operator (Python API)
    plain = bearer(keys.create("alice", "read")[0])
    granted = bearer(keys.create("alice", "read", reads=["agent:team"])[0])
    ask = {"question": "What is the team vault code?", "route": "text", "k": 3}
    seen = client.post("/v1/answer", json=ask, headers=plain).json()
    assert {m["cube"] for m in seen["memories"]} == {"user:alice"}
    assert SECRET not in json.dumps(seen)
    read = client.post("/v1/answer", json=ask, headers=granted).json()
    assert read["memories"][0]["memory"] == SECRET


def _mcp(mem: Memory, principal: Principal, tool: str, arguments: dict[str, Any]) -> Any:
    server = build_mcp_server(mem, principal)

    async def call() -> Any:
        async with Client(server) as c:
            return await c.call_tool(tool, arguments)

    return anyio.run(call)


def test_mcp_tools_hold_to_the_grant(mem: Memory, keys: KeyStore) -> None:
    plain = Principal.of_key(keys.create("alice", "write")[1])
    granted = Principal.of_key(keys.create("alice", "write", reads=["agent:team"])[1])
    refused = _mcp(mem, plain, "mount_cube", {"cube": "agent:team"})
    assert refused.is_error and "no cube agent:team for user:alice" in refused.content[0].text
    done = _mcp(mem, granted, "mount_cube", {"cube": "agent:team"})
    assert not done.is_error and done.structured_content["cube"] == "agent:team"
    query = {"query": "team vault code", "k": 5}
    hidden = _mcp(mem, plain, "search_memories", query).structured_content["hits"]
    assert {h["cube"] for h in hidden} == {"user:alice"}
    shown = _mcp(mem, granted, "search_memories", query).structured_content["hits"]
    assert shown[0]["memory"] == SECRET and shown[0]["cube"] == "agent:team"
    assert _mcp(mem, plain, "list_mounts", {}).structured_content == {"mounts": []}
    team = mem.get_all(agent_id="team").items
    forged = _mcp(mem, granted, "update_memory", {"memory_id": team[1].id, "text": "forged"})
    erased = _mcp(mem, granted, "delete_memory", {"memory_id": team[1].id, "hard": True})
    assert forged.is_error and erased.is_error and mem.get_all(agent_id="team").items == team
    gone = _mcp(mem, granted, "unmount_cube", {"cube": "agent:team"})
    assert not gone.is_error and mem.mounts(user_id="alice") == []


def test_key_grants_are_checked_stored_and_migrated(tmp_path: Path) -> None:
    old = tmp_path / "old-keys.db"
    with sqlite3.connect(old) as conn:  # a keys.db from before read grants
        conn.execute(
            "CREATE TABLE api_keys (id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, "
            "owner TEXT, scope TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)"
        )
        conn.execute(
            "INSERT INTO api_keys VALUES ('k1', 'h', 'user:alice', 'write', "
            "'2024-01-01T00:00:00+00:00', NULL)"
        )
    store = SQLiteKeyStore(old)
    assert [(k.id, k.reads) for k in store.list()] == [("k1", ())]
    token, key = store.create("alice", "read", reads=["agent:team", "bob", "agent:team"])
    assert key.reads == ("agent:team", "user:bob")
    assert store.authenticate(token) == key and store.get(key.id).reads == key.reads
    with pytest.raises(ValidationError, match="admin"):
        store.create(None, "admin", reads=["agent:team"])
    with pytest.raises(ValidationError, match="its own owner"):
        store.create("alice", "write", reads=["user:alice"])
    with pytest.raises(ValidationError):
        store.create("alice", "write", reads="agent:team")
    assert len(store.list()) == 2  # the refused ones wrote nothing


runner = CliRunner()


def _cli(home: Path, *args: str) -> Any:
    done = runner.invoke(app, ["--home", str(home), "--json", *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_cli_mount_search_and_keys(mem: Memory, tmp_path: Path) -> None:
    assert _cli(tmp_path, "mount", "agent:team", "-u", "alice")["cube"] == "agent:team"
    assert [m["cube"] for m in _cli(tmp_path, "mounts", "-u", "alice")] == ["agent:team"]
    hits = _cli(tmp_path, "search", "team vault code", "-u", "alice", "-k", "3")
    assert hits[0]["memory"] == SECRET and hits[0]["cube"] == "agent:team"
    own = _cli(tmp_path, "search", "vault", "-u", "alice", "--cube", "user:alice")
    assert {h["cube"] for h in own} == {"user:alice"}
    shown = runner.invoke(app, ["--home", str(tmp_path), "search", "vault code", "-u", "alice"])
    assert shown.exit_code == 0 and "agent:team" in shown.stdout and "user:alice" in shown.stdout
    assert _cli(tmp_path, "unmount", "agent:team", "-u", "alice")["cube"] == "agent:team"
    missing = runner.invoke(app, ["--home", str(tmp_path), "--json", "unmount", "agent:team"])
    assert missing.exit_code != 0
    made = _cli(tmp_path, "keys", "create", "--owner", "alice", "--read", "agent:team")
    assert made["reads"] == ["agent:team"]
    listed = _cli(tmp_path, "keys", "ls")
    assert [k["reads"] for k in listed] == [["agent:team"]]
