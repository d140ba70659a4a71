"""The REST API through FastAPI's TestClient against a real Memory and key store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _server_helpers import Keys, bearer, make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.scope import Scope
from engram.server.app import create_app
from engram.store.keys import KeyStore
from engram.store.sqlite_keys import SQLiteKeyStore
from engram.text.retrieval.feedback import FEATURES


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-api")


@pytest.fixture(scope="module")
def memory(home: Path, embedder: Embedder) -> Iterator[Memory]:
    with Memory(home=home, embedder=embedder) as mem:
        yield mem


@pytest.fixture(scope="module")
def store(home: Path) -> KeyStore:
    return SQLiteKeyStore(home / "keys.db")


@pytest.fixture(scope="module")
def keys(store: KeyStore) -> Keys:
    return make_keys(store)


@pytest.fixture(scope="module")
def client(memory: Memory, store: KeyStore) -> Iterator[TestClient]:
    settings = ServerConfig(rate_limit_per_s=0)
    with TestClient(create_app(memory, store, settings)) as c:
        yield c


DEEP: list = []
for _ in range(40):
    DEEP = [DEEP]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


def test_full_lifecycle_of_a_memory(client: TestClient, keys: Keys) -> None:
    added = client.post(
        "/v1/memories",
        json={
            "text": "I moved to Lisbon in May",
            "session_id": "s1",
            "metadata": {"topic": "home"},
            "timestamp": "2023-05-08T13:56:00Z",
        },
        headers=keys.alice,
    )
    assert added.status_code == 201, added.text
    item = added.json()["items"][0]
    mid = item["id"]
    assert item["provenance"]["owner"] == "user:alice"  # the key decided the owner
    assert item["provenance"]["source"] == "rest"
    assert item["provenance"]["timestamp"].startswith("2023-05-08T13:56:00")

    hits = client.post("/v1/search", json={"query": "where does she live"}, headers=keys.alice)
    assert hits.status_code == 200
    assert [h["id"] for h in hits.json()["hits"]] == [mid]
    assert set(hits.json()["hits"][0]) >= {"score", "provenance"}

    got = client.get(f"/v1/memories/{mid}", headers=keys.alice).json()
    assert got["metadata"] == {"topic": "home"}

    patched = client.patch(
        f"/v1/memories/{mid}",
        json={"text": "I moved to Porto in June", "reason": "correction"},
        headers=keys.alice,
    )
    assert patched.status_code == 200 and patched.json()["version"] == 2

    archived = client.delete(f"/v1/memories/{mid}", headers=keys.alice)
    assert archived.json() == {"id": mid, "deleted": "archived"}
    search = client.post("/v1/search", json={"query": "Porto"}, headers=keys.alice).json()
    assert search["hits"] == []
    assert client.get(f"/v1/memories/{mid}", headers=keys.alice).json()["state"] == "archived"

    restored = client.post(
        f"/v1/memories/{mid}/restore", json={"reason": "oops"}, headers=keys.alice
    )
    assert restored.json()["state"] == "active"
    history = client.get(f"/v1/memories/{mid}/history", headers=keys.alice).json()["versions"]
    assert [v["event"] for v in history] == ["add", "update", "delete", "restore"]
    assert history[0]["memory"] == "I moved to Lisbon in May"

    erased = client.delete(f"/v1/memories/{mid}", params={"hard": "true"}, headers=keys.alice)
    assert erased.json() == {"id": mid, "deleted": "erased"}
    _error(client.get(f"/v1/memories/{mid}", headers=keys.admin), 404, "not_found")


def test_messages_and_cursor_pagination(client: TestClient, keys: Keys) -> None:
    messages = [{"role": "user", "content": f"note number {i}", "name": "Ann"} for i in range(5)]
    added = client.post(
        "/v1/memories",
        json={"messages": messages, "agent_id": "planner", "type": "note"},
        headers=keys.bob,
    )
    assert added.status_code == 201
    assert [i["provenance"]["agent_id"] for i in added.json()["items"]] == ["planner"] * 5
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "type": "note", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/memories", params=params, headers=keys.bob).json()
        seen += [i["memory"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [m["content"] for m in messages]
    only = client.get("/v1/memories", params={"filters": '{"absent": 1}'}, headers=keys.bob).json()
    assert only["items"] == []


def _feedback_events(memory: Memory, user_id: str) -> int:
    cube = memory.cube(Scope.of(user_id=user_id))
    return 0 if cube is None else len(memory.store.feedback(cube.id))


def test_feedback_trains_the_owners_ranking(client: TestClient, keys: Keys) -> None:
    facts = [
        "Maya adopted a grey cat from the shelter on Elm street.",
        "Tomas fixed the old bicycle with a new chain.",
        "The team dinner was moved to Friday at the harbour restaurant.",
        "Maya started learning the cello last winter.",
    ]
    added = client.post(
        "/v1/memories",
        json={"messages": [{"content": f} for f in facts], "user_id": "maya"},
        headers=keys.admin,
    )
    cello = added.json()["items"][-1]["id"]
    body = {"query": "What instrument is Maya practising?", "cited": [cello], "user_id": "maya"}
    for _ in range(3):
        fed = client.post("/v1/feedback", json=body, headers=keys.admin)
        assert fed.status_code == 200, fed.text
    result = fed.json()
    assert set(result) == {"owner", "recorded", "weights"}
    assert result["owner"] == "user:maya" and result["recorded"] == 1
    assert set(result["weights"]) == set(FEATURES)
    hits = client.post(
        "/v1/search",
        json={"query": "Which instrument has she been practising?", "k": 4, "user_id": "maya"},
        headers=keys.admin,
    )
    assert hits.status_code == 200, hits.text
    assert hits.json()["hits"][0]["id"] == cello  # no word in common: feedback connects them


def test_feedback_scope_and_owners(client: TestClient, keys: Keys, memory: Memory) -> None:
    mine = memory.add("alice's feedback target", user_id="alice")[0].id
    bobs = memory.add("bob's feedback target", user_id="bob")[0].id
    before = _feedback_events(memory, "alice"), _feedback_events(memory, "bob")

    def feedback(headers: dict[str, str], **body: Any) -> Any:
        return client.post("/v1/feedback", json={"query": "q", **body}, headers=headers)

    read = feedback(keys.alice_read, cited=[mine])
    assert "read" in _error(read, 403, "forbidden")["message"]
    # bob's id under alice's key, next to her own: 404 exactly as a missing id
    foreign = _error(feedback(keys.alice, cited=[mine], wrong=[bobs]), 404, "not_found")
    missing = _error(feedback(keys.alice, cited=[mine], wrong=["m-nope"]), 404, "not_found")
    assert foreign["message"].replace(bobs, "<id>") == missing["message"].replace("m-nope", "<id>")
    _error(feedback(keys.bob, cited=[mine], user_id="alice"), 404, "not_found")
    _error(feedback(keys.admin, cited=[mine]), 422, "invalid_input")  # admin names the owner
    assert (_feedback_events(memory, "alice"), _feedback_events(memory, "bob")) == before
    used = feedback(keys.alice, used=[mine])
    assert used.json()["owner"] == "user:alice"  # the key decided the owner
    assert _feedback_events(memory, "alice") == before[0] + 1


def test_owners_route(client: TestClient, keys: Keys, memory: Memory) -> None:
    memory.add("seed", user_id="carol")
    mine = client.get("/v1/owners", headers=keys.alice).json()["owners"]
    assert mine == [{"owner": "user:alice", "user_id": "alice", "agent_id": None}]
    everyone = {o["owner"] for o in client.get("/v1/owners", headers=keys.admin).json()["owners"]}
    assert {"user:carol", "user:bob"} <= everyone


def test_admin_addresses_any_owner_and_must_name_one(client: TestClient, keys: Keys) -> None:
    added = client.post(
        "/v1/memories", json={"text": "dave likes jazz", "user_id": "dave"}, headers=keys.admin
    )
    assert added.status_code == 201
    assert added.json()["items"][0]["provenance"]["owner"] == "user:dave"
    mid = added.json()["items"][0]["id"]
    assert client.get(f"/v1/memories/{mid}", headers=keys.admin).status_code == 200
    _error(
        client.post("/v1/search", json={"query": "jazz"}, headers=keys.admin), 422, "invalid_input"
    )


def test_auth_errors(client: TestClient, store: KeyStore) -> None:
    err = _error(client.get("/v1/memories"), 401, "unauthorized")
    assert "Authorization" in err["message"]
    assert client.get("/v1/memories").headers["www-authenticate"] == "Bearer"
    _error(client.get("/v1/memories", headers=bearer("egk_nope")), 401, "unauthorized")
    _error(client.get("/v1/memories", headers={"Authorization": "Basic YTpi"}), 401, "unauthorized")
    token, key = store.create("erin", "read")
    assert client.get("/v1/memories", headers=bearer(token)).status_code == 200
    store.revoke(key.id)
    _error(client.get("/v1/memories", headers=bearer(token)), 401, "unauthorized")


def test_read_key_cannot_write(client: TestClient, keys: Keys) -> None:
    err = _error(
        client.post("/v1/memories", json={"text": "x"}, headers=keys.alice_read), 403, "forbidden"
    )
    assert "read" in err["message"]
    assert client.get("/v1/memories", headers=keys.alice_read).status_code == 200
    assert (
        client.post("/v1/search", json={"query": "x"}, headers=keys.alice_read).status_code == 200
    )


@pytest.mark.parametrize(
    "method, path, payload, code",
    [
        ("post", "/v1/memories", {"text": ""}, "invalid_input"),
        # values are Memory's to check, on every surface alike (the operation table);
        # shapes (unknown fields, wrong JSON types) are the schema's: invalid_request
        ("post", "/v1/memories", {"text": "a", "messages": []}, "invalid_input"),
        ("post", "/v1/memories", {"text": "a", "type": "nonsense"}, "invalid_input"),
        ("post", "/v1/memories", {"text": "a", "bogus": 1}, "invalid_request"),
        ("post", "/v1/memories", {"text": "a", "metadata": {"n": 2**70}}, "invalid_input"),
        ("post", "/v1/memories", {"text": "a", "metadata": {"d": DEEP}}, "invalid_input"),
        ("post", "/v1/search", {"query": "a", "k": 0}, "invalid_input"),
        ("post", "/v1/search", {"query": "a", "k": 10**30}, "invalid_input"),
        ("post", "/v1/search", {"query": "a", "filters": {"x": {"$regex": 1}}}, "invalid_input"),
        ("post", "/v1/search", {"query": "a", "pipeline": "nope"}, "invalid_input"),
        ("post", "/v1/search", b'{"query": "\\ud800"}', "invalid_input"),  # lone surrogate
        ("post", "/v1/feedback", {"cited": ["m"]}, "invalid_request"),
        ("post", "/v1/feedback", {"query": "a"}, "invalid_input"),
        ("post", "/v1/feedback", {"query": "a", "cited": "m"}, "invalid_request"),
        ("post", "/v1/feedback", {"query": "a", "cited": [""]}, "invalid_input"),
        ("post", "/v1/feedback", {"query": "a", "cited": ["m"], "wrong": ["m"]}, "invalid_input"),
        ("post", "/v1/feedback", {"query": "a", "cited": ["m"], "x": 1}, "invalid_request"),
        ("post", "/v1/feedback", {"query": "", "cited": ["m"]}, "invalid_input"),
        ("get", "/v1/memories?limit=0", None, "invalid_input"),
        ("get", "/v1/memories?cursor=zzz", None, "invalid_input"),
        ("get", "/v1/memories?filters=[1", None, "invalid_input"),
        ("get", "/v1/memories?filters=" + "[" * 5000, None, "invalid_input"),
        ("get", "/v1/memories?since=yesterday", None, "invalid_input"),
        ("patch", "/v1/memories/some-id", {}, "invalid_input"),
        ("delete", "/v1/memories/x?hard=maybe", None, "invalid_request"),
    ],
)
def test_bad_input_is_4xx_in_the_error_shape(
    client: TestClient, keys: Keys, method: str, path: str, payload: Any, code: str
) -> None:
    kwargs = {} if payload is None else {"json": payload}
    headers = dict(keys.alice)
    if isinstance(payload, bytes):
        kwargs = {"content": payload}
        headers["Content-Type"] = "application/json"
    response = client.request(method.upper(), path, headers=headers, **kwargs)
    _error(response, 422, code)


def test_malformed_and_deep_json_bodies(client: TestClient, keys: Keys) -> None:
    headers = {**keys.alice, "Content-Type": "application/json"}
    for body in (b"{not json", b"[" * 100_000, b'{"query": "a"' + b"}" * 3, b"\xff\xfe"):
        response = client.post("/v1/search", content=body, headers=headers)
        assert 400 <= response.status_code < 500, (body[:20], response.text)
        assert "error" in response.json()


def test_unknown_route_and_method(client: TestClient, keys: Keys) -> None:
    _error(client.get("/v1/nothing", headers=keys.alice), 404, "not_found")
    _error(client.put("/v1/search", headers=keys.alice), 405, "method_not_allowed")


def test_body_limit(memory: Memory, store: KeyStore, keys: Keys) -> None:
    app = create_app(memory, store, ServerConfig(max_body_bytes=1000, rate_limit_per_s=0))
    with TestClient(app) as c:
        small = c.post("/v1/search", json={"query": "x" * 100}, headers=keys.alice)
        assert small.status_code == 200
        err = _error(
            c.post("/v1/search", json={"query": "x" * 2000}, headers=keys.alice),
            413,
            "payload_too_large",
        )
        assert err["details"] == {"max_bytes": 1000}

        def chunks():  # no Content-Length: the streamed size is counted
            for _ in range(10):
                yield b"x" * 500

        streamed = c.post("/v1/search", content=chunks(), headers=keys.alice)
        _error(streamed, 413, "payload_too_large")


def test_rate_limit_per_key(memory: Memory, store: KeyStore, keys: Keys) -> None:
    app = create_app(memory, store, ServerConfig(rate_limit_per_s=0.5, rate_limit_burst=3))
    with TestClient(app) as c:
        codes = [c.get("/v1/owners", headers=keys.alice).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = c.get("/v1/owners", headers=keys.alice)
        err = _error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1 and err["details"]["retry_after_s"] > 0
        # another key has its own bucket
        assert c.get("/v1/owners", headers=keys.bob).status_code == 200


def test_healthz_and_metrics(client: TestClient, keys: Keys) -> None:
    import engram

    health = client.get("/healthz").json()
    assert health == {"status": "ok", "version": engram.__version__, "auth": True}
    client.get("/v1/owners", headers=keys.alice)
    client.get("/v1/memories/nope", headers=keys.alice)
    text = client.get("/metrics").text
    assert 'engram_http_requests_total{method="GET",route="/v1/owners",status="200"}' in text
    assert 'route="/v1/memories/{memory_id}",status="404"' in text
    assert "nope" not in text  # templates, never raw paths
    assert (
        'engram_http_request_duration_seconds_bucket{method="GET",route="/v1/owners",le="+Inf"}'
        in text
    )
    active = [
        line for line in text.splitlines() if line.startswith('engram_memories{state="active"}')
    ]
    assert len(active) == 1 and int(active[0].split()[-1]) >= 1


def test_no_auth_mode(memory: Memory) -> None:
    app = create_app(memory, None, ServerConfig(rate_limit_per_s=0))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/healthz").json()["auth"] is False
        added = c.post("/v1/memories", json={"text": "local note", "user_id": "me"})
        assert added.status_code == 201
        assert "user:me" in {o["owner"] for o in c.get("/v1/owners").json()["owners"]}
    with TestClient(app, base_url="http://evil.example") as c:  # DNS rebinding: refused
        assert c.get("/v1/owners").status_code == 400
