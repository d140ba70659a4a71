"""Owner isolation: a call scoped to one owner never sees or changes another owner's memories."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engram import Memory, MemoryState, NotFoundError, ValidationError

SHARED = [
    "I love hiking in the Alps every summer.",
    "My favourite colour is green.",
    "I have a cat named Pepper.",
    "My passport expires next year.",
]


@dataclass
class World:
    alice: list[str]
    bob: list[str]
    agent: list[str]
    alice_only: str
    bob_only: str


@pytest.fixture
def world(memory: Memory) -> World:
    alice = [i.id for i in memory.add(SHARED, user_id="alice")]
    bob = [i.id for i in memory.add(SHARED, user_id="bob")]
    agent = [i.id for i in memory.add(SHARED, agent_id="x")]
    [alice_only] = memory.add("Alice's locker code is quokka-17.", user_id="alice")
    [bob_only] = memory.add("Bob's locker code is wombat-42.", user_id="bob")
    return World(alice + [alice_only.id], bob + [bob_only.id], agent, alice_only.id, bob_only.id)


PIPELINES = ("bm25", "dense", "hybrid", "rrf")


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_search_sees_only_the_owner(memory: Memory, world: World, pipeline: str) -> None:
    for scope, own in (
        ({"user_id": "alice"}, world.alice),
        ({"user_id": "bob"}, world.bob),
        ({"agent_id": "x"}, world.agent),
    ):
        hits = memory.search(
            "hiking cat passport colour locker code", k=100, pipeline=pipeline, **scope
        )
        assert hits, (scope, pipeline)
        assert {h.id for h in hits} <= set(own), (scope, pipeline)
    owners = {
        h.provenance.owner
        for h in memory.search("locker code", user_id="alice", k=100, pipeline=pipeline)
    }
    assert owners == {"user:alice"}


def test_exclusive_terms_do_not_leak(memory: Memory, world: World) -> None:
    # "wombat" only occurs in bob's cube: alice's lexical search must find nothing
    assert memory.search("wombat", user_id="alice", pipeline="bm25") == []
    assert [h.id for h in memory.search("wombat", user_id="bob", pipeline="bm25")] == [
        world.bob_only
    ]
    # attempts to address another cube through FTS5 syntax are plain words
    for query in ('cube : "c2" OR wombat', "cube:c2 wombat", "c2 NEAR(wombat)", "c1 c2 c3 *"):
        hits = memory.search(query, user_id="alice", k=100)
        assert {h.id for h in hits} <= set(world.alice), query


def test_get_of_another_owners_id_is_not_found(memory: Memory, world: World) -> None:
    with pytest.raises(NotFoundError, match="user:alice"):
        memory.get(world.bob_only, user_id="alice")
    with pytest.raises(NotFoundError):
        memory.get(world.bob[0], agent_id="x")
    with pytest.raises(NotFoundError):
        memory.get(world.agent[0], user_id="bob")
    with pytest.raises(NotFoundError):
        memory.get(world.alice[0], user_id="carol")  # an owner with no cube at all
    assert memory.get(world.bob_only, user_id="bob").memory.startswith("Bob's locker")


def test_get_all_pages_only_the_owner(memory: Memory, world: World) -> None:
    ids: list[str] = []
    cursor = None
    while True:
        page = memory.get_all(user_id="alice", limit=2, cursor=cursor)
        ids += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert ids == world.alice
    # a cursor obtained from bob's listing is refused in alice's scope (owner-bound)
    bob_page = memory.get_all(user_id="bob", limit=1)
    assert bob_page.next_cursor is not None
    with pytest.raises(ValidationError, match="not one Engram issued for this owner"):
        memory.get_all(user_id="alice", cursor=bob_page.next_cursor)
    assert memory.get_all(agent_id="x").items[0].provenance.owner == "agent:x"
    assert [i.id for i in memory.get_all(agent_id="x").items] == world.agent


def test_update_delete_restore_history_cannot_touch_another_owner(
    memory: Memory, world: World
) -> None:
    target = world.bob[0]
    with pytest.raises(NotFoundError):
        memory.update(target, "hijacked", user_id="alice")
    with pytest.raises(NotFoundError):
        memory.update(target, metadata={"owned": "by alice"}, agent_id="x")
    with pytest.raises(NotFoundError):
        memory.delete(target, user_id="alice")
    with pytest.raises(NotFoundError):
        memory.delete(target, user_id="alice", hard=True)
    with pytest.raises(NotFoundError):
        memory.history(target, user_id="alice")
    memory.delete(world.bob[1], user_id="bob")
    with pytest.raises(NotFoundError):
        memory.restore(world.bob[1], user_id="alice")

    untouched = memory.get(target, user_id="bob")
    assert untouched.memory == SHARED[0]
    assert untouched.version == 1
    assert untouched.state is MemoryState.ACTIVE
    assert untouched.metadata == {}
    assert memory.get(world.bob[1]).state is MemoryState.ARCHIVED
    assert len(memory.history(target, user_id="bob")) == 1


def test_delete_all_of_one_owner_leaves_the_others(memory: Memory, world: World) -> None:
    assert memory.delete_all(user_id="alice") == len(world.alice)
    assert memory.search("hiking", user_id="alice") == []
    assert memory.search("hiking", user_id="bob")[0].id == world.bob[0]
    assert memory.stats(user_id="bob").active == len(world.bob)
    assert memory.stats(agent_id="x").active == len(world.agent)

    assert memory.delete_all(user_id="bob", hard=True) == len(world.bob)
    assert memory.get_all(user_id="bob", include_archived=True).items == []
    assert memory.stats(user_id="alice").archived == len(world.alice)
    assert [i.id for i in memory.get_all(agent_id="x").items] == world.agent


def test_same_source_id_in_two_cubes_is_two_memories(memory: Memory) -> None:
    [a] = memory.add({"content": "turn one", "source_id": "D1:1"}, user_id="alice")
    [b] = memory.add({"content": "turn one", "source_id": "D1:1"}, user_id="bob")
    assert a.id != b.id
    assert a.provenance.owner == "user:alice" and b.provenance.owner == "user:bob"


def test_agent_cube_is_separate_from_user_cube_with_that_agent(memory: Memory) -> None:
    [in_user] = memory.add("Alice's reminder set by agent x.", user_id="alice", agent_id="x")
    [in_agent] = memory.add("Agent x's own scratch note.", agent_id="x")
    assert in_user.provenance.owner == "user:alice"
    assert in_user.provenance.agent_id == "x"
    assert in_agent.provenance.owner == "agent:x"
    assert {h.id for h in memory.search("reminder note", agent_id="x", k=50)} == {in_agent.id}
    assert {h.id for h in memory.search("reminder note", user_id="alice", k=50)} == {in_user.id}
    with pytest.raises(NotFoundError):
        memory.get(in_user.id, agent_id="x")


def test_agent_id_narrows_inside_a_user_cube(memory: Memory) -> None:
    by_x = [
        i.id
        for i in memory.add(
            ["x note one about tea", "x note two about tea"], user_id="alice", agent_id="x"
        )
    ]
    by_y = [i.id for i in memory.add(["y note about tea"], user_id="alice", agent_id="y")]
    plain = [i.id for i in memory.add(["plain note about tea"], user_id="alice")]

    assert {h.id for h in memory.search("tea", user_id="alice", agent_id="x", k=50)} == set(by_x)
    assert {
        h.id for h in memory.search("tea", user_id="alice", agent_id="y", k=50, pipeline="dense")
    } == set(by_y)
    assert {h.id for h in memory.search("tea", user_id="alice", k=50)} == set(by_x + by_y + plain)
    assert [i.id for i in memory.get_all(user_id="alice", agent_id="x").items] == by_x

    assert memory.delete_all(user_id="alice", agent_id="y") == 1
    assert memory.get(by_y[0]).state is MemoryState.ARCHIVED
    assert all(memory.get(i).state is MemoryState.ACTIVE for i in by_x + plain)


@pytest.mark.parametrize("verb", ["get", "history", "update", "delete", "restore"])
def test_id_calls_with_user_and_agent_also_check_the_agent(memory: Memory, verb: str) -> None:
    [mine] = memory.add("the planner's note", user_id="alice", agent_id="planner")
    [other] = memory.add("the coder's note", user_id="alice", agent_id="coder")
    if verb == "restore":
        memory.delete(other.id)
        memory.delete(mine.id)
    calls = {
        "get": lambda i: memory.get(i, user_id="alice", agent_id="planner"),
        "history": lambda i: memory.history(i, user_id="alice", agent_id="planner"),
        "update": lambda i: memory.update(i, "changed", user_id="alice", agent_id="planner"),
        "delete": lambda i: memory.delete(i, hard=True, user_id="alice", agent_id="planner"),
        "restore": lambda i: memory.restore(i, user_id="alice", agent_id="planner"),
    }
    before = memory.get(other.id)
    with pytest.raises(NotFoundError, match=f"^no memory '{other.id}' for user:alice$"):
        calls[verb](other.id)
    assert memory.get(other.id) == before
    calls[verb](mine.id)  # the planner's own memory is in scope
