"""The MCP server, driven by the SDK's own client: over stdio (a real `engram mcp`
subprocess) and over streamable HTTP (a real uvicorn `engram serve` app), where every tool
is also tried across owners with two keys."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from _server_helpers import make_keys, running_server
from engram import Memory
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.scope import Scope
from engram.server.app import create_app
from engram.server.mcp_tools import TOOLS
from engram.store.sqlite_keys import SQLiteKeyStore
from engram.text.retrieval.feedback import FEATURES

SECRET = "alice keeps the spare key under the blue flowerpot"


def _http_client(url: str, headers: dict[str, str]) -> Client:
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def _text(result: Any) -> str:
    parts = [getattr(c, "text", "") for c in result.content]
    return " ".join(parts) + json.dumps(result.structured_content or {})


@pytest.mark.slow
def test_stdio_roundtrip(tmp_path: Path, embedder: Embedder) -> None:
    """`engram mcp --user alice` as a subprocess: tools listed, add → search → history."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    params = StdioServerParameters(
        command=str(Path(sys.executable).with_name("engram")),  # the installed console script
        args=["--home", str(tmp_path), "mcp", "--user", "alice"],
        env=env,
    )

    async def session() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == set(TOOLS)
            added = await client.call_tool("add_memory", {"text": "I adopted a greyhound"})
            assert not added.is_error, _text(added)
            item = added.structured_content["items"][0]
            assert item["provenance"]["owner"] == "user:alice"  # the --user default
            assert item["provenance"]["source"] == "mcp"
            hits = await client.call_tool("search_memories", {"query": "dog", "k": 3})
            assert [h["id"] for h in hits.structured_content["hits"]] == [item["id"]]
            updated = await client.call_tool(
                "update_memory", {"memory_id": item["id"], "text": "I adopted two greyhounds"}
            )
            assert updated.structured_content["version"] == 2
            history = await client.call_tool("memory_history", {"memory_id": item["id"]})
            assert [v["event"] for v in history.structured_content["versions"]] == [
                "add",
                "update",
            ]
            fed = await client.call_tool(
                "memory_feedback", {"query": "which dog?", "cited": [item["id"]]}
            )
            assert fed.structured_content["owner"] == "user:alice", _text(fed)
            assert fed.structured_content["recorded"] == 1
            bad = await client.call_tool("search_memories", {"query": "x", "k": 0})
            assert bad.is_error and "invalid_input" in _text(bad)
            once = {"text": "flight at 9:40", "idempotency_key": "retry-1"}
            first = (await client.call_tool("add_memory", once)).structured_content
            again = (await client.call_tool("add_memory", once)).structured_content
            assert first["items"][0]["id"] == again["items"][0]["id"]

    anyio.run(session)
    with Memory(home=tmp_path, embedder=embedder) as memory:  # written to the real store
        assert memory.get_all(user_id="alice").items[0].memory == "I adopted two greyhounds"
        assert _feedback_events(memory) == {"user:alice": 1}


def _feedback_events(memory: Memory) -> dict[str, int]:
    """Feedback events recorded per owner (owners with none left out)."""
    counts = {}
    for owner in memory.owners():
        named = Scope.owner_kwargs(owner)
        cube = memory.cube(Scope.of(named.get("user_id"), named.get("agent_id")))
        counts[owner] = 0 if cube is None else len(memory.store.feedback(cube.id))
    return {owner: n for owner, n in counts.items() if n}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("mcp-http")
    # answer_question runs the packaged tiny LM: these tests are about MCP, not a model
    with Memory(home=home, embedder=embedder, answer={"model": "engram-lm"}) as memory:
        store = SQLiteKeyStore(home / "keys.db")
        keys = make_keys(store)
        app = create_app(memory, store, ServerConfig(rate_limit_per_s=0))
        with running_server(app) as url:
            yield memory, keys, url


def test_http_tools_with_a_key(served: Any) -> None:
    memory, keys, url = served

    async def session() -> None:
        async with _http_client(url, keys.alice) as client:
            assert {t.name for t in (await client.list_tools()).tools} == set(TOOLS)
            added = await client.call_tool(
                "add_memory", {"text": "we met at the climbing gym", "session_id": "s1"}
            )
            mid = added.structured_content["items"][0]["id"]
            page = await client.call_tool("list_memories", {"limit": 10})
            assert mid in [i["id"] for i in page.structured_content["items"]]
            got = await client.call_tool("get_memory", {"memory_id": mid})
            assert got.structured_content["provenance"]["session_id"] == "s1"
            deleted = await client.call_tool("delete_memory", {"memory_id": mid})
            assert deleted.structured_content == {"id": mid, "deleted": "archived"}
            restored = await client.call_tool("restore_memory", {"memory_id": mid})
            assert restored.structured_content["state"] == "active"
        async with _http_client(url, keys.alice_read) as client:
            denied = await client.call_tool("add_memory", {"text": "nope"})
            assert denied.is_error and "forbidden" in _text(denied)
            denied = await client.call_tool("memory_feedback", {"query": "q", "cited": [mid]})
            assert denied.is_error and "forbidden" in _text(denied)

    anyio.run(session)
    assert memory.get_all(user_id="alice").items[-1].provenance.source == "mcp"


FACTS = [
    "Maya adopted a grey cat from the shelter on Elm street.",
    "Tomas fixed the old bicycle with a new chain.",
    "The team dinner was moved to Friday at the harbour restaurant.",
    "Maya started learning the cello last winter.",
]


def test_http_feedback_trains_the_owners_ranking(served: Any) -> None:
    """An admin key names the owner; cited feedback lifts the memory for a similar query."""
    memory, keys, url = served
    owner = {"user_id": "maya"}
    query = "Which instrument has she been practising?"

    async def session() -> tuple[list[str], dict[str, Any]]:
        async with _http_client(url, keys.admin) as client:
            ids = []
            for fact in FACTS:
                added = await client.call_tool("add_memory", {"text": fact, **owner})
                ids.append(added.structured_content["items"][0]["id"])
            cello = ids[-1]
            result: dict[str, Any] = {}
            for _ in range(3):
                fed = await client.call_tool(
                    "memory_feedback",
                    {"query": "What instrument is Maya practising?", "cited": [cello], **owner},
                )
                assert not fed.is_error, _text(fed)
                result = fed.structured_content
            hits = await client.call_tool("search_memories", {"query": query, "k": 4, **owner})
            assert not hits.is_error, _text(hits)
            return [h["id"] for h in hits.structured_content["hits"]], result | {"cello": cello}

    ranked, result = anyio.run(session)
    assert result["owner"] == "user:maya" and result["recorded"] == 1
    assert set(result["weights"]) == set(FEATURES)
    cube = memory.cube(Scope.of(user_id="maya"))
    assert memory.store.feedback(cube.id).weights == result["weights"]  # what was stored
    assert ranked[0] == result["cello"]


def test_http_without_a_valid_key_is_refused(served: Any) -> None:
    _, _, url = served
    for headers in ({}, {"Authorization": "Bearer egk_forged"}):
        response = httpx2.post(
            f"{url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={**headers, "Accept": "application/json, text/event-stream"},
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def _args(schema: dict[str, Any], memory_id: str) -> dict[str, Any]:
    """Arguments for a tool that aim at alice: her memory id and her user id."""
    props = schema.get("properties", {})
    fill = {
        "memory_id": memory_id,
        "cited": [memory_id],  # ids in a list argument are probed too
        "user_id": "alice",
        "text": "probe",
        "query": "flowerpot",
        "question": "what does alice keep?",  # an answer echoes it: no probe word here
        "cube": "agent:team",  # mount tools: a cube bob's key was not granted
    }
    args = {name: fill[name] for name in props if name in fill}
    missing = set(schema.get("required", [])) - set(args)
    assert not missing, f"add a probe value for required argument(s) {missing}"
    return args


def test_every_tool_is_isolated_between_owners(served: Any) -> None:
    memory, keys, url = served
    alice_id = memory.add(SECRET, user_id="alice")[0].id
    before = (memory.get(alice_id).model_dump(), len(memory.history(alice_id)))
    events = _feedback_events(memory)

    async def probe(headers: dict[str, str], owner_named: bool) -> list[tuple[str, Any]]:
        results = []
        async with _http_client(url, headers) as client:
            for tool in (await client.list_tools()).tools:
                args = _args(tool.input_schema, alice_id)
                if not owner_named:
                    args.pop("user_id", None)
                results.append((tool.name, await client.call_tool(tool.name, args)))
        return results

    async def session() -> None:
        for owner_named in (True, False):
            results = await probe(keys.bob, owner_named)
            assert {name for name, _ in results} == set(TOOLS)
            for name, result in results:
                assert SECRET not in _text(result) and "flowerpot" not in _text(result), name
                own_cube = {
                    "add_memory",
                    "search_memories",
                    "list_memories",
                    "answer_question",
                    "list_mounts",
                }
                if owner_named or name not in own_cube:
                    assert result.is_error and "not_found" in _text(result), (name, _text(result))
                else:  # bob's own cube: allowed, and holds nothing of alice
                    assert not result.is_error, (name, _text(result))

    anyio.run(session)
    after = (memory.get(alice_id).model_dump(), len(memory.history(alice_id)))
    assert after == before
    assert _feedback_events(memory) == events  # memory_feedback recorded nothing


def _error_of(result: Any) -> dict[str, Any]:
    """The Engram error in a tool error's text ('Error executing tool x: {...}')."""
    text = " ".join(getattr(part, "text", "") for part in result.content)
    error: dict[str, Any] = json.loads(text[text.index("{") :])["error"]
    return error


def test_every_tool_refuses_unknown_arguments(served: Any) -> None:
    """An argument a tool does not take is a tool error naming it, and nothing happens:
    `delete_memory(hardd=true)` does not archive, `add_memory(owner=...)` adds nothing."""
    memory, keys, url = served
    mid = memory.add("refusal probe: the red kite", user_id="alice")[0].id
    before = (memory.get(mid).model_dump(), len(memory.history(mid)), memory.owners())
    events = _feedback_events(memory)

    async def session() -> None:
        async with _http_client(url, keys.alice) as client:
            tools = (await client.list_tools()).tools
            assert {t.name for t in tools} == set(TOOLS)
            for tool in tools:
                assert tool.input_schema["additionalProperties"] is False, tool.name
                args = {**_args(tool.input_schema, mid), "bogus_arg": 1, "ctx": None}
                result = await client.call_tool(tool.name, args)
                assert result.is_error, tool.name
                error = _error_of(result)
                assert error["code"] == "invalid_request", (tool.name, error)
                assert "'bogus_arg'" in error["message"] and "'ctx'" in error["message"]
                assert error["details"]["unknown"] == ["bogus_arg", "ctx"]
            typo = await client.call_tool("delete_memory", {"memory_id": mid, "hardd": True})
            assert typo.is_error and "hardd" in _error_of(typo)["message"]
            owner = await client.call_tool("add_memory", {"text": "x", "owner": "user:bob"})
            assert owner.is_error and _error_of(owner)["details"]["unknown"] == ["owner"]

    anyio.run(session)
    assert (memory.get(mid).model_dump(), len(memory.history(mid)), memory.owners()) == before
    assert memory.get(mid).state == "active"
    assert _feedback_events(memory) == events


def test_invalid_argument_types_are_engram_errors(served: Any) -> None:
    """The SDK's own argument validation answers in Engram's error shape too, without
    echoing the rejected value."""
    _, keys, url = served
    value = "not-a-number-" + "z" * 100

    async def session() -> None:
        async with _http_client(url, keys.alice) as client:
            result = await client.call_tool("search_memories", {"query": "x", "k": value})
            assert result.is_error
            error = _error_of(result)
            assert error["code"] == "invalid_request" and error["message"].startswith("k: ")
            assert [e["loc"] for e in error["details"]["errors"]] == [["k"]]
            assert value not in json.dumps(error)

    anyio.run(session)
