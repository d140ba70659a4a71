"""Idempotency keys: a retried write is answered with the first response, never applied
twice; a key reused for another request is refused; keys belong to one owner; a chunked
add cut short is completed by its retry without duplicates."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from _engram_helpers import HashEmbedder
from _server_helpers import Keys, make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.embed import Embedder, EmbeddingError
from engram.server.app import create_app
from engram.server.idempotency import HEADER, REPLAYED
from engram.store.migrations import MIGRATIONS
from engram.store.sqlite_keys import SQLiteKeyStore


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    with Memory(home=tmp_path, embedder=HashEmbedder(dim=32)) as mem:
        yield mem


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(SQLiteKeyStore(tmp_path / "keys.db"))


@pytest.fixture
def client(memory: Memory, tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerConfig(rate_limit_per_s=0)
    with TestClient(create_app(memory, SQLiteKeyStore(tmp_path / "keys.db"), settings)) as c:
        yield c


def _with_key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, HEADER: key}


def _count(memory: Memory, user_id: str) -> int:
    return len(memory.get_all(user_id=user_id, limit=1000).items)


def test_the_migration_is_named_and_recorded(memory: Memory) -> None:
    assert "0006_idempotency_keys" in [name for name, _ in MIGRATIONS]
    conn = sqlite3.connect(memory.config.sqlite_path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    finally:
        conn.close()
    assert "0006_idempotency_keys" in names


def test_a_retried_add_replays_the_first_response(
    client: TestClient, keys: Keys, memory: Memory
) -> None:
    body = {"messages": [{"content": "I moved to Lisbon"}, {"content": "I like tea"}]}
    headers = _with_key(keys.alice, "add-1")
    first = client.post("/v1/memories", json=body, headers=headers)
    assert first.status_code == 201 and REPLAYED not in first.headers
    again = client.post("/v1/memories", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content  # byte for byte
    assert _count(memory, "alice") == 2
    # the same JSON written differently is the same request
    reordered = '{"messages":[{"content":"I moved to Lisbon"},{"content":"I like tea"}]}'
    third = client.post(
        "/v1/memories",
        content=reordered,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert third.status_code == 201 and third.content == first.content


def test_without_a_key_every_add_writes(client: TestClient, keys: Keys, memory: Memory) -> None:
    for _ in range(2):
        assert client.post("/v1/memories", json={"text": "tea"}, headers=keys.alice).is_success
    assert _count(memory, "alice") == 2


def test_a_key_reused_for_another_request_is_refused(
    client: TestClient, keys: Keys, memory: Memory
) -> None:
    headers = _with_key(keys.alice, "k")
    assert client.post("/v1/memories", json={"text": "one"}, headers=headers).status_code == 201
    other = client.post("/v1/memories", json={"text": "two"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert _count(memory, "alice") == 1
    # ... and on another route too
    memory_id = memory.get_all(user_id="alice").items[0].id
    patch = client.patch(f"/v1/memories/{memory_id}", json={"text": "x"}, headers=headers)
    assert patch.status_code == 422
    assert memory.get(memory_id).memory == "one"


def test_keys_belong_to_one_owner(client: TestClient, keys: Keys, memory: Memory) -> None:
    a = client.post("/v1/memories", json={"text": "alice's"}, headers=_with_key(keys.alice, "k"))
    b = client.post("/v1/memories", json={"text": "bob's"}, headers=_with_key(keys.bob, "k"))
    assert a.status_code == b.status_code == 201
    assert REPLAYED not in b.headers
    assert b.json()["items"][0]["memory"] == "bob's"
    # an admin acting for alice shares alice's keys
    admin = client.post(
        "/v1/memories",
        json={"text": "alice's", "user_id": "alice"},
        headers=_with_key(keys.admin, "k"),
    )
    assert admin.status_code == 422  # same key, another request (body names the owner)


def test_update_and_delete_are_applied_once(client: TestClient, keys: Keys, memory: Memory) -> None:
    (item,) = memory.add("I live in Lisbon", user_id="alice")
    headers = _with_key(keys.alice, "patch-1")
    path = f"/v1/memories/{item.id}"
    first = client.patch(path, json={"text": "I live in Porto"}, headers=headers)
    again = client.patch(path, json={"text": "I live in Porto"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers[REPLAYED] == "true"
    assert [v.version for v in memory.history(item.id)] == [1, 2]
    headers = _with_key(keys.alice, "delete-1")
    first = client.delete(path, headers=headers)
    client.post(f"/v1/memories/{item.id}/restore", headers=keys.alice)
    again = client.delete(path, headers=headers)
    assert again.content == first.content and again.headers[REPLAYED] == "true"
    assert memory.get(item.id).state.value == "active"  # the replay did not archive again
    other = client.delete(path + "?hard=true", headers=headers)  # same key, other query
    assert other.status_code == 422


def test_a_failed_write_releases_its_key(client: TestClient, keys: Keys, memory: Memory) -> None:
    headers = _with_key(keys.alice, "k")
    missing = client.patch("/v1/memories/nope", json={"text": "x"}, headers=headers)
    assert missing.status_code == 404
    (item,) = memory.add("tea", user_id="alice")
    ok = client.patch(f"/v1/memories/{item.id}", json={"text": "x"}, headers=headers)
    assert ok.status_code == 200  # the failed attempt stored nothing under the key
    refused = client.post(
        "/v1/memories", json={"text": "t"}, headers=_with_key(keys.alice_read, "r")
    )
    assert refused.status_code == 403
    assert client.post(
        "/v1/memories", json={"text": "t"}, headers=_with_key(keys.alice, "r")
    ).is_success


class _Gated(HashEmbedder):
    """Blocks on the text 'slow' until released."""

    def __init__(self) -> None:
        super().__init__(dim=32)
        self.entered, self.release = threading.Event(), threading.Event()

    def _embed(self, texts: list[str]) -> np.ndarray:
        if "slow" in texts:
            self.entered.set()
            self.release.wait(10)
        return super()._embed(texts)


def test_a_request_still_running_is_409(tmp_path: Path, keys: Keys) -> None:
    embedder = _Gated()
    settings = ServerConfig(rate_limit_per_s=0)
    with (
        Memory(home=tmp_path / "m", embedder=embedder) as memory,
        TestClient(create_app(memory, SQLiteKeyStore(tmp_path / "keys.db"), settings)) as c,
    ):
        headers = _with_key(keys.alice, "busy")
        first: list[Any] = []
        thread = threading.Thread(
            target=lambda: first.append(
                c.post("/v1/memories", json={"text": "slow"}, headers=headers)
            )
        )
        thread.start()
        assert embedder.entered.wait(10)
        busy = c.post("/v1/memories", json={"text": "slow"}, headers=headers)
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_in_progress"
        assert busy.headers["Retry-After"] == "1"
        embedder.release.set()
        thread.join()
        assert first[0].status_code == 201
        replay = c.post("/v1/memories", json={"text": "slow"}, headers=headers)
        assert replay.content == first[0].content and replay.headers[REPLAYED] == "true"
        assert memory.stats(user_id="alice").active == 1


def test_a_running_record_whose_lease_ran_out_is_taken_over(memory: Memory) -> None:
    store = memory.store
    assert store.claim_idempotency("user:alice", "k", "fp", 60.0, 600.0) is None
    record = store.claim_idempotency("user:alice", "k", "fp", 60.0, 600.0)
    assert record is not None and record.state == "running"
    assert store.claim_idempotency("user:alice", "k", "fp", 60.0, 0.0) is None  # lease over
    store.finish_idempotency("user:alice", "k", 201, "{}")
    done = store.claim_idempotency("user:alice", "k", "fp", 60.0, 0.0)
    assert done is not None and (done.state, done.status, done.response) == ("done", 201, "{}")


def test_concurrent_retries_apply_once(client: TestClient, keys: Keys, memory: Memory) -> None:
    body = {"messages": [{"content": f"message {i}"} for i in range(50)]}
    headers = _with_key(keys.alice, "race")
    statuses: list[int] = []

    def post() -> None:
        statuses.append(client.post("/v1/memories", json=body, headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {201, 409} and 201 in statuses
    assert _count(memory, "alice") == 50


def test_bad_keys_are_422(client: TestClient, keys: Keys) -> None:
    for bad in ("", " ", "x" * 200):
        response = client.post(
            "/v1/memories", json={"text": "t"}, headers=_with_key(keys.alice, bad)
        )
        assert response.status_code == 422, bad


def test_erasing_memories_erases_the_owners_stored_responses(
    client: TestClient, keys: Keys, memory: Memory
) -> None:
    headers = _with_key(keys.alice, "add")
    first = client.post("/v1/memories", json={"text": "secret plan"}, headers=headers)
    memory_id = first.json()["items"][0]["id"]
    client.post("/v1/memories", json={"text": "bob's"}, headers=_with_key(keys.bob, "add"))
    assert client.delete(f"/v1/memories/{memory_id}?hard=true", headers=keys.alice).is_success
    conn = sqlite3.connect(memory.config.sqlite_path)
    try:
        rows = conn.execute("SELECT owner, response FROM idempotency_keys").fetchall()
    finally:
        conn.close()
    assert [owner for owner, _ in rows] == ["user:bob"]
    assert all("secret plan" not in (response or "") for _, response in rows)


def test_expired_keys_are_forgotten(memory: Memory, tmp_path: Path, keys: Keys) -> None:
    settings = ServerConfig(rate_limit_per_s=0, idempotency_ttl_s=0.001)
    with TestClient(create_app(memory, SQLiteKeyStore(tmp_path / "keys.db"), settings)) as c:
        headers = _with_key(keys.alice, "short")
        assert c.post("/v1/memories", json={"text": "one"}, headers=headers).status_code == 201
        later = c.post("/v1/memories", json={"text": "two"}, headers=headers)
        assert later.status_code == 201 and REPLAYED not in later.headers


# -- the Python API: a chunked add cut short, then retried ---------------------------


class _FailsOnce(HashEmbedder):
    """Fails on the call that embeds `poison`, once."""

    def __init__(self, poison: str):
        super().__init__(dim=32)
        self.poison: str | None = poison

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.poison is not None and self.poison in texts:
            self.poison = None
            raise EmbeddingError("the model crashed")
        return super()._embed(texts)


def test_a_chunked_add_cut_short_is_completed_by_its_retry(tmp_path: Path) -> None:
    texts = [f"message number {i}" for i in range(1000)]
    embedder: Embedder = _FailsOnce(poison=texts[700])
    with Memory(home=tmp_path, embedder=embedder, limits={"add_chunk": 128}) as memory:
        with pytest.raises(EmbeddingError):
            memory.add(texts, user_id="alice", idempotency_key="import-1")
        stored = _count_all(memory)
        assert 0 < stored < 1000 and stored % 128 == 0  # whole chunks committed
        items = memory.add(texts, user_id="alice", idempotency_key="import-1")
        assert [i.memory for i in items] == texts
        assert _count_all(memory) == 1000  # nothing twice
        again = memory.add(texts, user_id="alice", idempotency_key="import-1")
        assert [i.id for i in again] == [i.id for i in items]
        fresh = memory.add(texts[:3], user_id="alice", idempotency_key="import-2")
        assert not {i.id for i in fresh} & {i.id for i in items}


def _count_all(memory: Memory) -> int:
    return memory.stats(user_id="alice").active


def test_messages_with_their_own_source_id_keep_it(memory: Memory) -> None:
    message: dict[str, Any] = {"content": "hi", "source_id": "turn-7"}
    (item,) = memory.add([message], user_id="alice", idempotency_key="k")
    assert item.provenance.source_id == "turn-7"
    (other,) = memory.add("hi", user_id="alice", idempotency_key="k")
    assert other.provenance.source_id is not None
    assert other.provenance.source_id.startswith("idem-")
