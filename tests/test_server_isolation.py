"""Tenant isolation: every REST route, enumerated from /openapi.json, tried with bob's key
against alice's memory. Nothing of alice's may come back, nothing of hers may change, and
her memory id must be answered exactly like an id that does not exist (404: existence is
never confirmed). Memory ids travel in paths and in bodies (`/v1/feedback`'s `cited`); a
probe that fails must also record nothing. A control run with alice's own key proves each
probe is well formed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _server_helpers import bearer, make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.scope import Scope
from engram.server.app import create_app
from engram.store.sqlite_keys import SQLiteKeyStore

SECRET = "alice's secret: the safe code is 4-8-15-16"
OVERRIDES = {
    "text": "probe text",
    "query": "safe code",
    "user_id": "alice",
    "question": "what is in the safe?",
    "model": "engram",  # /v1/chat/completions: the served model
    "max_tokens": 4,
    "cube": "agent:shared",  # /v1/mounts: a cube alice's key was granted (see `world`)
}
ID_LISTS = ("cited",)  # body fields that carry memory ids: filled with the probed id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Any]:
    home: Path = tmp_path_factory.mktemp("isolation")
    # the answering routes run the packaged tiny LM: these tests are about isolation
    with Memory(home=home, embedder=embedder, answer={"model": "engram-lm"}) as memory:
        store = SQLiteKeyStore(home / "keys.db")
        keys = make_keys(store)
        memory.add("the shared team cube", agent_id="shared")
        keys.alice = bearer(store.create("alice", "write", reads=["agent:shared"])[0])
        app = create_app(memory, store, ServerConfig(rate_limit_per_s=0))
        with TestClient(app) as client:
            yield memory, keys, client


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _example(schema: dict[str, Any], spec: dict[str, Any], fill: dict[str, Any]) -> Any:
    """A minimal valid value for a JSON schema (the shapes FastAPI emits); fields named in
    `fill` are included with that value."""
    schema = _resolve(schema, spec)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = [s for s in schema[union] if _resolve(s, spec).get("type") != "null"]
            return _example(options[0], spec, fill)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        wanted = set(schema.get("required", [])) | (set(props) & set(fill))
        return {
            name: fill[name] if name in fill else _example(props[name], spec, fill)
            for name in sorted(wanted)
        }
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": False, "array": []}.get(
        str(kind), "x"
    )


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "patch", "put", "delete"}
    ]


def _request(spec: dict[str, Any], path: str, op: dict[str, Any], memory_id: str) -> dict[str, Any]:
    params, url = {}, path
    for param in op.get("parameters", []):
        if param["in"] == "path" and param["name"] == "cube":
            url = url.replace("{cube}", OVERRIDES["cube"])
        elif param["in"] == "path":
            assert param["name"] == "memory_id", f"new path parameter {param['name']} in {path}"
            url = url.replace("{memory_id}", memory_id)
        elif param["name"] == "user_id":
            params["user_id"] = "alice"
    kwargs: dict[str, Any] = {"params": params}
    body = op.get("requestBody")
    if body is not None:
        fill = {**OVERRIDES, **{name: [memory_id] for name in ID_LISTS}}
        if path == "/v1/chat/completions":  # a conversation, not a memory's messages
            fill["messages"] = [{"role": "user", "content": "what is in the safe?"}]
        kwargs["json"] = _example(body["content"]["application/json"]["schema"], spec, fill)
    return {"url": url, **kwargs}


def _carries_id(path: str, probe: dict[str, Any]) -> bool:
    body = probe.get("json")
    return "{memory_id}" in path or (
        isinstance(body, dict) and any(name in body for name in ID_LISTS)
    )


def _same_answer(first: Any, second: Any, first_id: str, second_id: str) -> bool:
    """Status, code and message agree once the ids are swapped: nothing tells them apart."""
    a, b = first.json()["error"], second.json()["error"]
    return (
        first.status_code == second.status_code
        and a["code"] == b["code"]
        and a["message"].replace(first_id, "<id>") == b["message"].replace(second_id, "<id>")
    )


def _feedback_events(memory: Memory) -> dict[str, int]:
    """Feedback events recorded per owner (owners with none left out): a refused probe
    must not add any."""
    counts = {}
    for owner in memory.owners():
        cube = memory.cube(Scope.of(**Scope.owner_kwargs(owner)))
        counts[owner] = 0 if cube is None else len(memory.store.feedback(cube.id))
    return {owner: n for owner, n in counts.items() if n}


def _snapshot(memory: Memory, mid: str) -> tuple[Any, ...]:
    item = memory.get(mid)
    return (item.memory, item.version, item.state, item.metadata, len(memory.history(mid)))


def test_every_route_is_isolated_between_owners(world: Any) -> None:
    memory, keys, client = world
    spec = client.get("/openapi.json").json()
    operations = _operations(spec)
    assert len(operations) >= 10  # the spec really was enumerated
    alice_id = memory.add(SECRET, user_id="alice")[0].id
    memory.add("bob's own note", user_id="bob")  # bob has a cube: his probes reach it
    before = _snapshot(memory, alice_id)
    events = _feedback_events(memory)
    assert any(p == "/v1/feedback" for p, _, _ in operations)  # ids in a body are probed too
    for path, method, op in operations:
        probe = _request(spec, path, op, alice_id)
        response = client.request(method.upper(), headers=keys.bob, **probe)
        where = f"{method.upper()} {path}"
        assert response.status_code < 500, (where, response.text)
        assert SECRET not in response.text and "4-8-15-16" not in response.text, where
        touches_alice = (
            "{memory_id}" in path
            or "user_id" in probe["params"]
            or (isinstance(probe.get("json"), dict) and probe["json"].get("user_id") == "alice")
        )
        if touches_alice:
            assert response.status_code == 404, (where, response.status_code, response.text)
            # alice's id answers exactly as an id that does not exist
            missing = _request(spec, path, op, str(uuid.uuid4()))
            if "user_id" not in missing["params"] and "json" not in missing:
                other = client.request(method.upper(), headers=keys.bob, **missing)
                assert other.status_code == response.status_code, where
                assert other.json()["error"]["code"] == response.json()["error"]["code"]
        # bob without naming an owner: his own cube only, still nothing of alice
        response = client.request(method.upper(), headers=keys.bob, **_unnamed(probe))
        assert response.status_code < 500, (where, response.text)
        assert SECRET not in response.text, where
        if _carries_id(path, probe):
            assert response.status_code == 404, (where, response.text)
            missing_id = str(uuid.uuid4())
            missing = _unnamed(_request(spec, path, op, missing_id))
            other = client.request(method.upper(), headers=keys.bob, **missing)
            assert _same_answer(response, other, alice_id, missing_id), (where, other.text)
    assert _snapshot(memory, alice_id) == before  # nothing of alice's changed
    assert _feedback_events(memory) == events  # and no feedback was recorded for anyone


def _unnamed(probe: dict[str, Any]) -> dict[str, Any]:
    """The probe without an owner: a bound key then acts for its own owner."""
    probe = {**probe, "params": dict(probe["params"])}
    probe["params"].pop("user_id", None)
    if isinstance(probe.get("json"), dict):
        probe["json"] = {k: v for k, v in probe["json"].items() if k != "user_id"}
    return probe


def test_probes_are_well_formed_for_the_owner(world: Any) -> None:
    """Control: the same requests with alice's key succeed on her own memories, so the
    404s above come from isolation and not from malformed probes."""
    memory, keys, client = world
    spec = client.get("/openapi.json").json()
    for path, method, op in _operations(spec):
        mid = memory.add("control memory about the safe", user_id="alice")[0].id
        if path.endswith("/restore"):
            memory.delete(mid, user_id="alice")
        if path.endswith("/{cube}"):  # unmount what is mounted
            memory.mount(OVERRIDES["cube"], user_id="alice")
        events = _feedback_events(memory).get("user:alice", 0)
        response = client.request(
            method.upper(), headers=keys.alice, **_request(spec, path, op, mid)
        )
        assert response.status_code < 300, (method, path, response.text)
        if path == "/v1/feedback":  # the owner's own id in the body is recorded
            assert _feedback_events(memory).get("user:alice") == events + 1
