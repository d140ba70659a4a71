"""A parameter of `Memory.add` reaches every surface with the same validation: ttl and
expires_at over Python, REST, MCP and the CLI (the drift the tier review found)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from typer.testing import CliRunner

from _server_helpers import make_keys
from engram import Memory, ValidationError
from engram.cli import app
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.scope import Scope
from engram.server.access import Principal
from engram.server.app import create_app
from engram.server.mcp_tools import build_mcp_server
from engram.store.sqlite_keys import SQLiteKeyStore

runner = CliRunner()
LATER = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def memory(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    with Memory(home=tmp_path, embedder=embedder) as mem:
        yield mem


def expiry(memory: Memory, memory_id: str) -> datetime | None:
    return memory.retention(memory_id).expires_at


def test_python(memory: Memory) -> None:
    [item] = memory.add("py", user_id="alice", ttl=3600)
    found = expiry(memory, item.id)
    assert found is not None and timedelta(minutes=59) < found - datetime.now(UTC)
    [at] = memory.add("py at", user_id="alice", expires_at=LATER.isoformat())
    assert expiry(memory, at.id) == LATER
    with pytest.raises(ValidationError, match="ttl"):
        memory.add("bad", user_id="alice", ttl=-1)


def test_rest(memory: Memory, tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path / "keys.db")
    alice = make_keys(store).alice
    app_ = create_app(memory, store, ServerConfig(rate_limit_per_s=0))
    with TestClient(app_, base_url="http://localhost") as client:
        ok = client.post("/v1/memories", json={"text": "rest", "ttl": 3600}, headers=alice)
        assert ok.status_code == 201, ok.text
        assert expiry(memory, ok.json()["items"][0]["id"]) is not None
        at = {"text": "rest at", "expires_at": LATER.isoformat()}
        item = client.post("/v1/memories", json=at, headers=alice).json()["items"][0]
        assert expiry(memory, item["id"]) == LATER
        bad = client.post("/v1/memories", json={"text": "x", "ttl": -1}, headers=alice)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"


def test_mcp(memory: Memory) -> None:
    server = build_mcp_server(memory, Principal.local(Scope.of(user_id="alice").owner))

    async def session() -> dict[str, Any]:
        async with Client(server) as client:
            ok = await client.call_tool("add_memory", {"text": "mcp", "ttl": 3600})
            assert not ok.is_error
            bad = await client.call_tool("add_memory", {"text": "x", "ttl": -1})
            assert bad.is_error and "invalid_input" in str(bad.content)
            return dict(ok.structured_content or {})

    added = anyio.run(session)
    assert expiry(memory, added["items"][0]["id"]) is not None


def test_cli(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "cli")]
    ok = runner.invoke(app, [*home, "--json", "add", "cli", "-u", "alice", "--ttl", "3600"])
    assert ok.exit_code == 0, ok.output
    memory_id = json.loads(ok.stdout)[0]["id"]
    info = runner.invoke(app, [*home, "--json", "retention", memory_id])
    assert json.loads(info.stdout)["expires_at"] is not None
    bad = runner.invoke(app, [*home, "--json", "add", "x", "-u", "alice", "--ttl", "-1"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["code"] == "invalid_input"
