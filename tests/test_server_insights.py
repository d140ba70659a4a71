"""/v1/insights: read-only views of one owner's memory (counts, timeline, retention and
gc forecast, jobs) that agree with the Python API, change nothing, and never reach
another owner's data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _engram_helpers import HashEmbedder
from _server_helpers import Keys, make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.lifecycle.report import GcAction
from engram.server.app import create_app
from engram.store.sqlite_keys import SQLiteKeyStore

VIEWS = ("overview", "timeline", "retention", "jobs")
SECRET = "alice's safe code is 4-8-15-16"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Memory, Keys, TestClient]]:
    with Memory(home=tmp_path, embedder=HashEmbedder()) as memory:
        store = SQLiteKeyStore(tmp_path / "keys.db")
        keys = make_keys(store)
        app = create_app(memory, store, ServerConfig(rate_limit_per_s=0), mcp=False)
        with TestClient(app) as client:
            yield memory, keys, client
        store.close()


def _seed(memory: Memory) -> dict[str, str]:
    trip = memory.add(
        [
            {"content": "We land in Lisbon at nine", "timestamp": "2024-03-01T09:00:00"},
            {"content": SECRET, "timestamp": "2024-03-02T18:00:00"},
        ],
        user_id="alice",
        session_id="trip",
    )
    memory.add("Quarterly numbers are due", user_id="alice", session_id="work")
    facts = [
        memory.add(text, user_id="alice", memory_type=kind)[0]
        for text, kind in [("Alice is allergic to peanuts", "fact"), ("Window seats", "preference")]
    ]
    memory.delete(facts[1].id, user_id="alice")
    memory.pin(facts[0].id, user_id="alice")
    memory.add("Bob's bike is red", user_id="bob", session_id="b1")
    return {"first": trip[0].id, "secret": trip[1].id, "pinned": facts[0].id}


def _get(client: TestClient, view: str, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(f"/v1/insights/{view}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_overview_counts_equal_the_store(world: Any) -> None:
    memory, keys, client = world
    ids = _seed(memory)
    data = _get(client, "overview", keys.alice)
    items = list(memory.iter_all(user_id="alice", include_archived=True))
    assert data["owner"] == "user:alice" and data["total"] == len(items) == 5
    assert data["by_state"] == {"active": 4, "archived": 1}
    assert data["by_type"] == {
        "fact": {"active": 1, "archived": 0},
        "preference": {"active": 0, "archived": 1},
        "turn": {"active": 3, "archived": 0},
    }
    tiers = Counter(memory.retention(i.id, user_id="alice").tier.value for i in items[:4])
    assert data["by_tier"] == {t: tiers[t] for t in ("working", "episodic", "long_term")}
    assert data["sessions"] == 2 and data["pinned"] == 1
    assert data["first_at"].startswith("2024-03-01T09:00:00")
    assert ids["pinned"] in {i.id for i in items}


def test_timeline_places_memories_when_they_happened(world: Any) -> None:
    memory, keys, client = world
    ids = _seed(memory)
    data = _get(client, "timeline", keys.alice)
    points = data["points"]
    assert data["total"] == len(points) == 4 and not data["truncated"]
    assert [p["at"] for p in points] == sorted(p["at"] for p in points)
    first = points[0]
    assert first["id"] == ids["first"] and first["dated"] == "provenance"
    assert {p["dated"] for p in points[2:]} == {"stored"}
    bands = {b["session_id"]: b for b in data["sessions"]}
    assert set(bands) == {"trip", "work", None}
    assert bands["trip"]["count"] == 2 and bands["trip"]["by_type"] == {"turn": 2}
    assert bands["trip"]["start"].startswith("2024-03-01T09:00")
    assert bands["trip"]["end"].startswith("2024-03-02T18:00")

    everything = _get(client, "timeline", keys.alice, include_archived="true")
    assert everything["total"] == 5
    assert Counter(p["state"] for p in everything["points"]) == {"active": 4, "archived": 1}
    latest = _get(client, "timeline", keys.alice, limit=2)
    assert latest["truncated"] and latest["total"] == 4
    assert [p["id"] for p in latest["points"]] == [p["id"] for p in points[-2:]]
    assert len(latest["sessions"]) == 3  # bands cover every memory, not only those listed


def test_retention_forecast_is_gc_dry_runs(world: Any) -> None:
    memory, keys, client = world
    ids = _seed(memory)
    memory.set_retention_policy(user_id="alice", min_retrievability=0.5)
    [jazz] = memory.add("Alice likes jazz", user_id="alice", memory_type="fact")
    before = memory.get_all(user_id="alice", include_archived=True).items
    data = _get(client, "retention", keys.alice)
    assert data["min_retrievability"] == 0.5 and data["total"] == 5
    assert data["horizon_days"] == 90 and data["decay"] == memory.config.retention.decay
    curve = data["curve"]
    r = [p["retrievability"] for p in curve]
    assert r[0] == 1.0 and r == sorted(r, reverse=True)  # forgetting only goes down
    one = min(curve, key=lambda p: abs(p["half_lives"] - 1.0))
    assert abs(one["half_lives"] - 1.0) < 0.05 and abs(one["retrievability"] - 0.5) < 0.02
    assert curve[-1]["half_lives"] >= 90 / memory.config.retention.initial_strength_days
    weakness = [m["retrievability"] * m["importance"] for m in data["memories"]]
    assert weakness == sorted(weakness)
    now = datetime.fromisoformat(data["at"])
    for entry in data["forecast"]:
        at = now + timedelta(days=entry["days"])
        report = memory.gc(user_id="alice", dry_run=True, at=at)
        expected = {d.id for d in report.decisions if d.action is GcAction.EVICT}
        assert {e["id"] for e in entry["evict"]} == expected, entry["days"]
    month = next(f for f in data["forecast"] if f["days"] == 30)
    assert [e["id"] for e in month["evict"]] == [jazz.id]  # not the pinned or buffered ones
    assert month["evict"][0]["preview"] == "Alice likes jazz"
    assert ids["pinned"] in {m["id"] for m in data["memories"]}
    assert {e["rule"] for e in month["evict"]} == {"forgotten"}
    assert memory.get_all(user_id="alice", include_archived=True).items == before  # dry runs


def test_jobs_are_the_owners_with_counts(world: Any) -> None:
    memory, keys, client = world
    _seed(memory)
    data = _get(client, "jobs", keys.alice)
    jobs = memory.jobs(user_id="alice")
    assert [j["id"] for j in data["jobs"]] == [j.id for j in jobs]  # newest first
    assert data["counts"] == {"queued": len(jobs), "running": 0, "done": 0, "failed": 0}
    assert {j["session_id"] for j in data["jobs"]} >= {"trip", "work"}
    assert _get(client, "jobs", keys.alice, state="done")["jobs"] == []
    assert len(_get(client, "jobs", keys.alice, limit=1)["jobs"]) == 1
    bobs = {j.id for j in memory.jobs(user_id="bob")}
    assert bobs and not bobs & {j["id"] for j in data["jobs"]}


def test_another_owner_is_answered_like_a_missing_one(world: Any) -> None:
    memory, keys, client = world
    _seed(memory)
    for view in VIEWS:
        theirs = client.get(f"/v1/insights/{view}", headers=keys.bob, params={"user_id": "alice"})
        nobody = client.get(f"/v1/insights/{view}", headers=keys.bob, params={"user_id": "zed"})
        assert theirs.status_code == nobody.status_code == 404, view
        assert theirs.json()["error"]["code"] == nobody.json()["error"]["code"] == "not_found"
        assert SECRET not in theirs.text and "Lisbon" not in theirs.text
        own = _get(client, view, keys.bob)  # naming no owner: the key's own
        assert own["owner"] == "user:bob" and SECRET not in str(own), view
        agent = client.get(f"/v1/insights/{view}", headers=keys.bob, params={"agent_id": "x"})
        assert agent.status_code == 422  # no narrowing to an agent: counts are the owner's
        assert _get(client, view, keys.alice_read)["owner"] == "user:alice"  # read suffices


def test_admin_names_one_owner_and_keys_are_required(world: Any) -> None:
    memory, keys, client = world
    _seed(memory)
    for view in VIEWS:
        unnamed = client.get(f"/v1/insights/{view}", headers=keys.admin)
        assert unnamed.status_code == 422, view  # never every owner at once
        assert _get(client, view, keys.admin, user_id="bob")["owner"] == "user:bob"
        assert client.get(f"/v1/insights/{view}").status_code == 401
        odd = client.get(f"/v1/insights/{view}", headers=keys.alice, params={"hardd": "1"})
        assert odd.status_code == 422
    empty = _get(client, "overview", keys.admin, user_id="nobody")
    assert empty["total"] == 0 and empty["first_at"] is None


def test_no_auth_server_serves_the_named_owner(tmp_path: Path) -> None:
    with Memory(home=tmp_path, embedder=HashEmbedder()) as memory:
        memory.add("hello", user_id="carol", session_id="s")
        with TestClient(create_app(memory, None, mcp=False), base_url="http://127.0.0.1") as c:
            assert c.get("/v1/insights/overview", params={"user_id": "carol"}).json()["total"] == 1
            timeline = c.get("/v1/insights/timeline", params={"user_id": "carol"}).json()
            assert [b["session_id"] for b in timeline["sessions"]] == ["s"]


def test_views_change_nothing(world: Any) -> None:
    memory, keys, client = world
    ids = _seed(memory)
    memory.set_retention_policy(user_id="alice", min_retrievability=0.9)
    history = memory.history(ids["first"], user_id="alice")
    for view in VIEWS:
        _get(client, view, keys.alice)
    assert memory.history(ids["first"], user_id="alice") == history
    assert memory.stats(user_id="alice").active == 4
    assert memory.retention(ids["first"], user_id="alice").at <= datetime.now(UTC)
