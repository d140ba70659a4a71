"""Property tests over the MCP tools, driven by the SDK's own client (in-process, and raw
JSON-RPC over HTTP): random and malformed arguments never crash the server. Every call is
either a result or a tool error in Engram's shape with a client-error code, and a call with
an argument the tool does not take is refused without changing anything.

Examples are derandomized and bounded, so the file runs in well under a minute."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from _server_helpers import make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.scope import Scope
from engram.server.access import Principal
from engram.server.app import create_app
from engram.server.mcp_tools import TOOLS, build_mcp_server
from engram.store.keys import KeyScope
from engram.store.sqlite_keys import SQLiteKeyStore

OWNER = "user:fuzz"
CLIENT_ERRORS = {"invalid_request", "invalid_input", "not_found", "forbidden"}
FUZZ = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
NASTY = [
    "", " ", "\x00", "\ud800", "null", "[1, 2]", '{"a": 1}', "-1", "1e999", "true",
    "9" * 40, "a" * 5000, "user:bob", "2024-13-45T25:00", "$eq", "../../etc/passwd",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(NASTY)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


class Fuzzed:
    """A Memory seeded for one owner, and an MCP client connected to it in-process."""

    def __init__(self, memory: Memory, portal: BlockingPortal, client: Client):
        self.memory, self.portal, self.client = memory, portal, client
        self.ids = [i.id for i in memory.add([f"seed fact {n}" for n in range(4)], user_id="fuzz")]
        memory.add("the team's shared fact", agent_id="team")  # a cube to mount
        self.schemas = {
            t.name: t.input_schema for t in portal.call(client.list_tools).tools
        }  # fmt: skip

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        return self.portal.call(self.client.call_tool, name, arguments)

    def fingerprint(self) -> Any:
        """What a refused call must leave unchanged: owners, counts, seed versions."""
        counts = []
        for owner in self.memory.owners():
            stats = self.memory.stats(**Scope.owner_kwargs(owner))
            counts.append((owner, stats.active, stats.archived))
        versions = [len(self.memory.history(i)) for i in self.ids if _exists(self.memory, i)]
        return counts, versions


def _exists(memory: Memory, memory_id: str) -> bool:
    return memory.store.locate(memory_id) is not None


PRINCIPALS = {
    "local": Principal.local(default_owner=OWNER),
    "key": Principal(
        scope=KeyScope.WRITE,
        owner=OWNER,
        key_id="fuzz",
        default_owner=OWNER,
        reads=frozenset({"agent:team"}),  # may read the team cube where its owner mounts it
    ),
}


@pytest.fixture(scope="module", params=sorted(PRINCIPALS))
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[Fuzzed]:
    home = tmp_path_factory.mktemp(f"mcp-fuzz-{request.param}")
    with ExitStack() as stack:
        # answer_question runs the packaged tiny LM: the fuzzer tests the tools, not a model
        memory = stack.enter_context(
            Memory(home=home, embedder=embedder, answer={"model": "engram-lm"})
        )
        portal = stack.enter_context(start_blocking_portal())
        server = build_mcp_server(memory, fallback=PRINCIPALS[request.param])
        client = stack.enter_context(portal.wrap_async_context_manager(Client(server)))
        yield Fuzzed(memory, portal, client)


def _plausible(fuzzed: Fuzzed) -> dict[str, st.SearchStrategy[Any]]:
    """Values that get past the first checks, so deeper code is reached too."""
    ids = st.sampled_from([*fuzzed.ids, "mem_missing"])
    return {
        "memory_id": ids,
        "cited": st.lists(ids, max_size=3),
        "used": st.lists(ids, max_size=3),
        "wrong": st.lists(ids, max_size=3),
        "user_id": st.sampled_from(["fuzz", "alice"]),
        "agent_id": st.sampled_from(["planner"]),
        "text": st.text(min_size=1, max_size=60),
        "query": st.text(min_size=1, max_size=60),
        "question": st.text(min_size=1, max_size=60),
        "route": st.sampled_from(["auto", "text", "kv", "lora", "nope"]),
        "max_tokens": st.integers(-2, 8),  # valid answers stay short: not a benchmark
        "k": st.integers(-2, 1500),
        "limit": st.integers(-2, 1500),
        "types": st.lists(st.sampled_from(["turn", "fact", "nope"]), max_size=2),
        "since": st.sampled_from(["2020-01-01T00:00:00", "0001-01-01T00:00:00+14:00"]),
        "until": st.sampled_from(["2999-01-01T00:00:00Z", "1999-01-01"]),
        "timestamp": st.sampled_from(["2023-05-08T13:56:00", "9999-12-31T23:59:59-14:00"]),
        "session_id": st.sampled_from(["s1", "s2"]),
        "role": st.sampled_from(["user", "assistant", "system", "robot"]),
        "type": st.sampled_from(["turn", "fact", "nope"]),
        "name": st.text(max_size=20),
        "reason": st.text(max_size=20),
        "hard": st.booleans(),
        "include_archived": st.booleans(),
        "metadata": st.dictionaries(st.sampled_from(["topic", "stars", "bad key!"]), SCALARS),
        "filters": st.dictionaries(st.sampled_from(["topic", "stars"]), SCALARS, max_size=2),
        "cube": st.sampled_from(["agent:team", "agent:nope", OWNER, "team"]),
        "cubes": st.lists(st.sampled_from([OWNER, "agent:team", "agent:nope"]), max_size=2),
    }


def _arguments(fuzzed: Fuzzed, name: str, extra: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Calls of `name`: half with plausible values only (to reach the tool's code), half
    with any JSON mixed in; required arguments always given; `extra`: unknown ones added."""
    schema = fuzzed.schemas[name]
    props, required = schema.get("properties", {}), set(schema.get("required", []))
    plausible = _plausible(fuzzed)
    sane = {p: plausible.get(p, JSON) for p in props}
    mixed = {p: (plausible[p] | JSON) if p in plausible else JSON for p in props}
    known = st.one_of(
        *(
            st.fixed_dictionaries(
                {p: v for p, v in values.items() if p in required},
                optional={p: v for p, v in values.items() if p not in required},
            )
            for values in (sane, mixed)
        )
    )
    if not extra:
        return known
    names = st.text(min_size=1, max_size=80).filter(lambda n: n not in props)
    extras = st.dictionaries(names, JSON, min_size=1, max_size=3)
    return st.tuples(known, extras).map(lambda pair: {**pair[0], **pair[1]})


def _error(name: str, result: Any) -> dict[str, Any]:
    """The Engram error of a tool error; fails on anything else (an SDK crash message)."""
    text = " ".join(getattr(part, "text", "") for part in result.content)
    prefix = f"Error executing tool {name}: "
    assert text.startswith(prefix), text[:300]
    error: dict[str, Any] = json.loads(text.removeprefix(prefix))["error"]
    assert error["code"] in CLIENT_ERRORS, error
    return error


@pytest.mark.slow
@pytest.mark.parametrize("name", TOOLS)
def test_random_arguments_never_crash_a_tool(
    fuzzed: Fuzzed, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = {"ok": 0, "error": 0}

    @given(arguments=_arguments(fuzzed, name, extra=False))
    @settings(FUZZ, max_examples=30)
    def check(arguments: dict[str, Any]) -> None:
        result = fuzzed.call(name, arguments)
        if result.is_error:
            _error(name, result)
            outcomes["error"] += 1
        else:
            assert isinstance(result.structured_content, dict), result
            outcomes["ok"] += 1

    with caplog.at_level(logging.ERROR):
        check()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes  # both paths were reached


@pytest.mark.slow
@pytest.mark.parametrize("name", TOOLS)
def test_unknown_arguments_are_always_refused(fuzzed: Fuzzed, name: str) -> None:
    @given(arguments=_arguments(fuzzed, name, extra=True))
    @settings(FUZZ, max_examples=10)
    def check(arguments: dict[str, Any]) -> None:
        before = fuzzed.fingerprint()
        result = fuzzed.call(name, arguments)
        assert result.is_error, (name, arguments)
        error = _error(name, result)
        assert error["code"] == "invalid_request", error
        unknown = sorted(set(arguments) - set(fuzzed.schemas[name]["properties"]))
        shown = [n if len(n) <= 64 else n[:64] + "..." for n in unknown]
        assert error["details"]["unknown"] == shown
        assert fuzzed.fingerprint() == before

    check()


MALFORMED_CALLS: list[Any] = [
    {"name": "add_memory", "arguments": ["text", "x"]},
    {"name": "add_memory", "arguments": "text=x"},
    {"name": "add_memory", "arguments": None},
    {"name": "add_memory"},
    {"arguments": {"text": "x"}},
    {"name": 7, "arguments": {}},
    {"name": "no_such_tool", "arguments": {}},
    {"name": "add_memory", "arguments": {"text": {"$ref": "#/"}}},
    {"name": "search_memories", "arguments": {"query": "x", "filters": "[" * 500}},
    {"name": "list_memories", "arguments": {"cursor": "c1" + "A" * 48}},
    "not an object",
    None,
]


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Any]:
    home: Path = tmp_path_factory.mktemp("mcp-fuzz-http")
    with Memory(home=home, embedder=embedder, answer={"model": "engram-lm"}) as memory:
        store = SQLiteKeyStore(home / "keys.db")
        keys = make_keys(store)
        app = create_app(memory, store, ServerConfig(rate_limit_per_s=0))
        with TestClient(app, base_url="http://127.0.0.1:8765") as client:  # SDK checks Host
            yield client, keys


@pytest.mark.parametrize("params", MALFORMED_CALLS)
def test_malformed_json_rpc_tool_calls_are_client_errors(http: Any, params: Any) -> None:
    client, keys = http
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {**keys.alice, "Accept": "application/json, text/event-stream"}
    response = client.post("/mcp", json=body, headers=headers)
    assert response.status_code < 500, response.text
    answer = response.json()
    assert "error" in answer or answer["result"]["isError"] is True, answer
