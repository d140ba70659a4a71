"""Every error code docs/server.md documents, produced by a real request to the app."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from _engram_helpers import fill
from _server_helpers import Keys, make_keys
from engram import Memory
from engram.config import EngramConfig, ServerConfig
from engram.embed import Embedder
from engram.server.app import create_app
from engram.store.keys import KeyStore
from engram.store.sqlite_keys import SQLiteKeyStore

DOC = Path(__file__).parent.parent / "docs" / "server.md"
ROW = re.compile(r"^\| (\d{3}) \| `([a-z_]+)` \|", re.MULTILINE)


def documented() -> set[tuple[int, str]]:
    section = DOC.read_text(encoding="utf-8").split("## Errors", 1)[1].split("\n## ", 1)[0]
    return {(int(status), code) for status, code in ROW.findall(section)}


@pytest.fixture
def setup(tmp_path: Path, embedder: Embedder) -> Iterator[tuple[Memory, KeyStore, Keys]]:
    config = EngramConfig(home=tmp_path, sqlite={"busy_timeout_s": 0.2})
    with Memory(config, embedder=embedder) as memory:
        store = SQLiteKeyStore(tmp_path / "keys.db")
        yield memory, store, make_keys(store)


def client(memory: Memory, store: KeyStore, **settings: float) -> TestClient:
    app = create_app(memory, store, ServerConfig(**{"rate_limit_per_s": 0, **settings}))
    return TestClient(app, base_url="http://localhost")


JSON = {"Content-Type": "application/json"}
Request = Callable[[TestClient, Keys, Memory], httpx.Response]


def _locked_write(c: TestClient, keys: Keys, memory: Memory) -> httpx.Response:
    """Another process holds SQLite's write lock past the store's busy timeout."""
    holder = sqlite3.connect(memory.config.sqlite_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        return c.post("/v1/memories", json={"messages": [{"content": "x"}]}, headers=keys.alice)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _rate_limited(memory: Memory, store: KeyStore, keys: Keys) -> httpx.Response:
    with client(memory, store, rate_limit_per_s=0.01, rate_limit_burst=1) as c:
        c.get("/v1/owners", headers=keys.alice)
        return c.get("/v1/owners", headers=keys.alice)


TRIGGERS: dict[tuple[int, str], Request] = {
    (400, "invalid_json"): lambda c, k, m: c.post(
        "/v1/search", content=b'{"query": ', headers={**k.alice, **JSON}
    ),
    (401, "unauthorized"): lambda c, k, m: c.get("/v1/owners"),
    (403, "forbidden"): lambda c, k, m: c.post(
        "/v1/memories", json={"messages": [{"content": "x"}]}, headers=k.alice_read
    ),
    (404, "not_found"): lambda c, k, m: c.get("/v1/memories/nope", headers=k.alice),
    (405, "method_not_allowed"): lambda c, k, m: c.put("/v1/search", headers=k.alice),
    (415, "unsupported_media_type"): lambda c, k, m: c.post(
        "/v1/search", content=b'{"query": "q"}', headers={**k.alice, "Content-Type": "text/plain"}
    ),
    (422, "invalid_request"): lambda c, k, m: c.post("/v1/search", json={}, headers=k.alice),
    (422, "invalid_input"): lambda c, k, m: c.post(
        "/v1/search", json={"query": "q", "k": 0}, headers=k.alice
    ),
    (503, "store_locked"): _locked_write,
}
# These need an app or a store of their own: tested below, and the idempotency codes in
# test_idempotency.py (test_a_request_still_running_is_409,
# test_a_key_reused_for_another_request_is_refused).
OWN_SETUP = {
    (413, "payload_too_large"),
    (429, "rate_limited"),
    (503, "disk_full"),
    (409, "idempotency_in_progress"),
    (422, "idempotency_key_reused"),
}


def test_every_documented_code_has_a_trigger_here() -> None:
    assert documented() == set(TRIGGERS) | OWN_SETUP


@pytest.mark.parametrize("status, code", sorted(TRIGGERS))
def test_documented_error_is_what_the_server_answers(
    setup: tuple[Memory, KeyStore, Keys], status: int, code: str
) -> None:
    memory, store, keys = setup
    with client(memory, store) as c:
        response = TRIGGERS[(status, code)](c, keys, memory)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error


def test_too_large_and_rate_limited(setup: tuple[Memory, KeyStore, Keys]) -> None:
    memory, store, keys = setup
    with client(memory, store, max_body_bytes=100) as c:
        big = c.post("/v1/search", json={"query": "x" * 500}, headers=keys.alice)
    assert (big.status_code, big.json()["error"]["code"]) == (413, "payload_too_large")
    limited = _rate_limited(memory, store, keys)
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1


def test_a_full_disk_is_503_disk_full(disk: Path, embedder: Embedder) -> None:
    with Memory(home=disk, embedder=embedder) as memory:
        memory.add("before the disk filled", user_id="alice")
        store = SQLiteKeyStore(disk / "keys.db")
        keys = make_keys(store)
        fill(disk)
        with client(memory, store) as c:  # ~900 KB of text: more than the disk has left
            big = {"messages": [{"content": "word " * 6000} for _ in range(30)]}
            response = c.post("/v1/memories", json=big, headers=keys.alice)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "disk_full"
        assert [i.memory for i in memory.get_all(user_id="alice").items] == [
            "before the disk filled"
        ]


def test_malformed_json_is_a_400_whatever_the_flaw(setup: tuple[Memory, KeyStore, Keys]) -> None:
    memory, store, keys = setup
    with client(memory, store) as c:
        for body in (b"{not json", b'{"query": "a"' + b"}" * 3, b"\xff\xfe"):
            response = c.post("/v1/search", content=body, headers={**keys.alice, **JSON})
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"]["code"] == "invalid_json"
