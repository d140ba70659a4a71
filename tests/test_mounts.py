"""Compose (engram.compose): an owner's search and answer read the cubes it mounts
read-only, each hit naming its cube; the merge; nothing written to a mounted cube; mounts
removed with either owner; on SQLite and on PostgreSQL (a real server, pgserver)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engram import Memory, NotFoundError, ValidationError
from engram.compose import MAX_MOUNTS, merge_hits
from engram.embed import Embedder
from engram.types import Provenance, SearchHit

TEAM = [
    "The team standup is at 9:30 every weekday in room Kepler.",
    "Deploys are frozen on Fridays after noon.",
    "The on-call rotation changes every Monday morning.",
]
ALICE = ["Alice drinks green tea and dislikes coffee.", "Alice's standup notes live in Notion."]


@pytest.fixture
def mem(tmp_path: Path, embedder: Embedder, store_settings: dict[str, Any]) -> Iterator[Memory]:
    """A Memory on each store, holding agent:team's and alice's memories."""
    with Memory(home=tmp_path, embedder=embedder, **store_settings) as m:
        for text in TEAM:
            m.add(text, agent_id="team")
        for text in ALICE:
            m.add(text, user_id="alice")
        yield m


def test_a_mounted_cube_is_searched_beside_the_owners_own(mem: Memory) -> None:
    assert [h.cube for h in mem.search("standup room", user_id="alice")] == ["user:alice"] * 2
    mount = mem.mount("agent:team", user_id="alice")
    assert (mount.owner, mount.cube) == ("user:alice", "agent:team")
    assert [m.cube for m in mem.mounts(user_id="alice")] == ["agent:team"]
    hits = mem.search("when is the team standup", user_id="alice", k=5)
    assert hits[0].memory == TEAM[0] and hits[0].cube == "agent:team"
    assert sorted(h.cube for h in hits) == ["agent:team"] * 3 + ["user:alice"] * 2
    assert all(h.cube == h.provenance.owner for h in hits)
    # the mounted cube's owner sees nothing of alice's: a mount is one way
    assert {h.cube for h in mem.search("green tea", agent_id="team", k=5)} == {"agent:team"}


def test_cubes_picks_among_the_owner_and_its_mounts(mem: Memory) -> None:
    mem.mount("agent:team", user_id="alice")
    only_own = mem.search("standup", user_id="alice", k=5, cubes=["user:alice"])
    assert {h.cube for h in only_own} == {"user:alice"}
    only_team = mem.search("standup", user_id="alice", k=5, cubes=["agent:team"])
    assert {h.cube for h in only_team} == {"agent:team"} and len(only_team) == 3
    mem.add("Bob's secret: the safe code is 4711.", user_id="bob")
    with pytest.raises(NotFoundError) as not_mounted:
        mem.search("safe code", user_id="alice", cubes=["user:bob"])
    with pytest.raises(NotFoundError) as absent:
        mem.search("safe code", user_id="alice", cubes=["user:nobody"])
    assert str(not_mounted.value).replace("bob", "nobody") == str(absent.value)
    for bad in ([], "agent:team", ["team"], [3]):
        with pytest.raises(ValidationError):
            mem.search("standup", user_id="alice", cubes=bad)  # type: ignore[arg-type]


def test_an_owner_without_memories_reads_its_mounts(mem: Memory) -> None:
    mem.mount("agent:team", user_id="carol")
    hits = mem.search("deploy freeze", user_id="carol", k=2)
    assert hits and {h.cube for h in hits} == {"agent:team"}
    assert mem.store.cube_id("user:carol") is None  # mounting created no empty cube


def test_a_search_writes_nothing_to_a_mounted_cube(mem: Memory) -> None:
    mem.add("Temporary: the wifi guest code is tulip.", agent_id="team", ttl=0.001)
    mem.mount("agent:team", user_id="alice")
    before = _team_state(mem)
    for _ in range(3):
        assert mem.search("standup and wifi code", user_id="alice", k=5)
    assert _team_state(mem) == before  # no access counts, no expiry, no new versions
    mem.search("standup", agent_id="team", k=2)  # the team's own search does count
    assert _team_state(mem) != before


def _team_state(m: Memory) -> list[tuple[str, int, int, str]]:
    if m.access is not None:
        m.access.flush()
    items = m.get_all(agent_id="team", include_archived=True).items
    return [(i.id, i.access_count, i.version, i.state.value) for i in items]


def test_mount_validation(mem: Memory) -> None:
    with pytest.raises(ValidationError, match="its own cube"):
        mem.mount("user:alice", user_id="alice")
    with pytest.raises(NotFoundError) as absent:
        mem.mount("agent:nobody", user_id="alice")
    assert str(absent.value) == "no cube agent:nobody for user:alice"
    for bad in ("team", "robot:team", "", None, "user:"):
        with pytest.raises(ValidationError):
            mem.mount(bad, user_id="alice")  # type: ignore[arg-type]
    first = mem.mount("agent:team", user_id="alice")
    assert mem.mount("agent:team", user_id="alice") == first  # again: nothing changes
    assert len(mem.mounts(user_id="alice")) == 1
    with pytest.raises(NotFoundError):
        mem.unmount("agent:other", user_id="alice")
    assert mem.unmount("agent:team", user_id="alice") == first
    assert mem.mounts(user_id="alice") == []
    assert {h.cube for h in mem.search("standup", user_id="alice", k=5)} == {"user:alice"}


def test_at_most_max_mounts(mem: Memory) -> None:
    for i in range(MAX_MOUNTS + 1):
        mem.add(f"note {i}", agent_id=f"a{i}")
    for i in range(MAX_MOUNTS):
        mem.mount(f"agent:a{i}", user_id="alice")
    with pytest.raises(ValidationError, match="the most allowed"):
        mem.mount(f"agent:a{MAX_MOUNTS}", user_id="alice")
    assert [m.cube for m in mem.mounts(user_id="alice")] == [
        f"agent:a{i}" for i in range(MAX_MOUNTS)
    ]


def test_erasing_either_owner_removes_its_mounts(mem: Memory) -> None:
    mem.add("Bob's note.", user_id="bob")
    mem.mount("agent:team", user_id="alice")
    mem.mount("agent:team", user_id="bob")
    mem.mount("user:alice", user_id="bob")
    mem.delete_all(user_id="alice", hard=True)  # alice erased: her mounts and bob's of her
    assert mem.mounts(user_id="alice") == []
    assert [m.cube for m in mem.mounts(user_id="bob")] == ["agent:team"]
    mem.delete_all(agent_id="team", hard=True)  # the team erased: every mount of it
    assert mem.mounts(user_id="bob") == []
    mem.add("A new team, same name.", agent_id="team")
    assert {h.cube for h in mem.search("team", user_id="bob", k=5)} == {"user:bob"}


def test_the_owner_narrowing_applies_to_its_own_cube_only(mem: Memory) -> None:
    mem.add("Alice's session note about the standup.", user_id="alice", session_id="s1")
    mem.mount("agent:team", user_id="alice")
    hits = mem.search("standup", user_id="alice", session_id="s1", k=10)
    own = [h for h in hits if h.cube == "user:alice"]
    assert [h.provenance.session_id for h in own] == ["s1"]
    assert sum(h.cube == "agent:team" for h in hits) == 3
    typed = mem.search("standup", user_id="alice", k=10, types=["fact"])
    assert typed == []  # types apply to every cube


def _hit(name: str, cube: str, relevance: float) -> SearchHit:
    now = datetime.now(UTC)
    return SearchHit(
        id=name,
        memory=name,
        cube=cube,
        score=0.0,
        relevance=relevance,
        type="turn",
        provenance=Provenance(owner=cube),
        created_at=now,
        updated_at=now,
    )


def test_merge_keeps_each_cubes_order_and_compares_relevance_across() -> None:
    own = [_hit("a1", "user:a", 0.3), _hit("a2", "user:a", 0.8)]
    team = [_hit("t1", "agent:t", 0.5), _hit("t2", "agent:t", 0.4), _hit("t3", "agent:t", 0.1)]
    merged = merge_hits([own, team], 4)
    assert [h.id for h in merged] == ["t1", "t2", "a1", "a2"]
    assert [h.id for h in merge_hits([own, team], 10)] == ["t1", "t2", "a1", "a2", "t3"]
    tie = [_hit("x", "agent:t", 0.3)]
    assert [h.id for h in merge_hits([own[:1], tie], 2)] == ["a1", "x"]  # ties: own first
    assert merge_hits([[], []], 3) == []


def test_answer_reads_the_mounted_cube_on_the_text_route(
    tmp_path: Path, embedder: Embedder
) -> None:
    tiny = {"model": "engram-lm", "max_tokens": 3}
    with Memory(home=tmp_path, embedder=embedder, answer=tiny) as m:
        for text in TEAM:
            m.add(text, agent_id="team")
        m.add(ALICE[0], user_id="alice")
        m.mount("agent:team", user_id="alice")
        text = m.answer("When is the team standup?", user_id="alice", route="text", k=2)
        assert text.memories[0].cube == "agent:team"
        assert text.memories[0].memory == TEAM[0]
        own = m.answer("When is the standup?", user_id="alice", route="text", cubes=["user:alice"])
        assert {u.cube for u in own.memories} == {"user:alice"}
        with pytest.raises(NotFoundError):
            m.answer("standup?", user_id="alice", route="text", cubes=["agent:other"])
