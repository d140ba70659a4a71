"""Retention through the public API: tiers, recall, TTL, pinning, budgets, forgetting,
consolidation, gc dry runs and transactions, per-owner policies, erasure and the CLI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _engram_helpers import HashEmbedder, all_table_bytes, db_path
from engram import Memory
from engram.cli import app
from engram.errors import StoreError, ValidationError
from engram.lifecycle import GcAction, Tier
from engram.types import MemoryState, VersionEvent

NOW = datetime.now(UTC)


def later(days: float) -> datetime:
    return NOW + timedelta(days=days)


def open_memory(home: Path, **retention: Any) -> Memory:
    return Memory(home=home, embedder=HashEmbedder(), retention=retention)


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memory]:
    memory = open_memory(tmp_path, working={"size": 3})
    try:
        yield memory
    finally:
        memory.close()


def facts(mem: Memory, texts: list[str], **kw: Any) -> list[str]:
    items = mem.add(texts, user_id="alice", memory_type="fact", **kw)
    return [item.id for item in items]


def state(mem: Memory, memory_id: str) -> MemoryState:
    return mem.get(memory_id).state


# -- tiers and the working buffer -------------------------------------------------------


def test_turns_enter_working_memory_and_other_types_long_term(mem: Memory) -> None:
    turn = mem.add("hello there", user_id="alice", session_id="s1")[0]
    (fact,) = facts(mem, ["Alice is vegetarian"])
    info = mem.retention(turn.id)
    assert info.tier is Tier.WORKING
    assert mem.retention(fact).tier is Tier.LONG_TERM
    assert info.strength_days == 14.0 and info.recall_count == 0 and not info.pinned
    assert info.retrievability == pytest.approx(1.0, abs=1e-3)
    assert mem.retention(turn.id, at=later(14)).retrievability == pytest.approx(0.5, abs=1e-3)


def test_working_buffer_replacement_keeps_the_last_turns_of_each_session(mem: Memory) -> None:
    s1 = mem.add([f"s1 turn {i}" for i in range(5)], user_id="alice", session_id="s1")
    s2 = mem.add(["s2 turn 0", "s2 turn 1"], user_id="alice", session_id="s2")
    buffer = mem.working_memory(user_id="alice", session_id="s1")
    assert [i.memory for i in buffer] == ["s1 turn 2", "s1 turn 3", "s1 turn 4"]
    assert len(mem.working_memory(user_id="alice", session_id="s2")) == 2
    report = mem.gc(user_id="alice")
    displaced = [d.id for d in report.decisions if d.action is GcAction.DISPLACE]
    assert displaced == [s1[0].id, s1[1].id]
    assert mem.retention(s1[0].id).tier is Tier.EPISODIC
    assert mem.retention(s1[4].id).tier is Tier.WORKING
    assert mem.retention(s2[0].id).tier is Tier.WORKING
    assert [i.memory for i in mem.working_memory(user_id="alice", session_id="s1")] == [
        "s1 turn 2",
        "s1 turn 3",
        "s1 turn 4",
    ]
    assert state(mem, s1[0].id) is MemoryState.ACTIVE  # leaving the buffer is not eviction
    assert [h.id for h in mem.search("s1 turn 0", user_id="alice", k=1)] == [s1[0].id]


def test_lru_replacement_keeps_a_recalled_old_turn(tmp_path: Path) -> None:
    with open_memory(tmp_path, working={"size": 2, "replacement": "lru"}) as mem:
        turns = mem.add(["first", "second", "third"], user_id="alice", session_id="s")
        mem.reinforce(turns[0].id)
        kept = [i.id for i in mem.working_memory(user_id="alice", session_id="s")]
        assert kept == [turns[0].id, turns[2].id]


def test_no_buffer_when_size_is_zero(tmp_path: Path) -> None:
    with open_memory(tmp_path, working={"size": 0}) as mem:
        turn = mem.add("hello", user_id="alice", session_id="s")[0]
        assert mem.retention(turn.id).tier is Tier.LONG_TERM
        assert mem.working_memory(user_id="alice", session_id="s") == []


# -- recall: feedback and reinforce -------------------------------------------------------


def test_feedback_strengthens_cited_and_used_and_weakens_wrong(mem: Memory) -> None:
    a, b, c = facts(mem, ["Maya has a grey cat", "Tomas climbs", "Maya plays cello"])
    mem.feedback("Does Maya have pets?", cited=[a], used=[c], wrong=[b], user_id="alice")
    for memory_id in (a, c):
        info = mem.retention(memory_id)
        assert info.recall_count == 1 and info.last_recalled_at is not None
        assert info.strength_days >= 14.0
    wrong = mem.retention(b)
    assert wrong.recall_count == 0 and wrong.strength_days == pytest.approx(7.0)


def test_spacing_a_late_recall_strengthens_more(mem: Memory) -> None:
    early, late = facts(mem, ["fact one", "fact two"])
    cube = mem.cube(_scope("alice"))
    keys = {m: mem.store.locate(m).key for m in (early, late)}
    mem.lifecycle.reinforce(cube.id, [keys[early]], at=later(1))  # R ~ 0.95
    mem.lifecycle.reinforce(cube.id, [keys[late]], at=later(40))  # R ~ 0.35
    s_early = mem.retention(early).strength_days
    s_late = mem.retention(late).strength_days
    assert 14.0 < s_early < s_late
    assert s_late / 14.0 > 2.0  # the nearly forgotten one more than doubles


def test_reinforce_resets_the_clock_and_counts(mem: Memory) -> None:
    (m,) = facts(mem, ["the wifi password is on the fridge"])
    info = mem.reinforce(m)
    assert info.recall_count == 1
    assert mem.reinforce(m).recall_count == 2


# -- TTL and expiry --------------------------------------------------------------------------


def test_ttl_expiry_archives_restorably_with_reason_and_source(mem: Memory) -> None:
    (short,) = facts(mem, ["the parking code is 4711"], ttl=timedelta(days=1))
    (keep,) = facts(mem, ["Alice lives in Porto"])
    assert mem.retention(short).expires_at is not None
    assert mem.gc(user_id="alice").evicted == 0  # not yet
    report = mem.gc(user_id="alice", at=later(2))
    (decision,) = [d for d in report.decisions if d.action is GcAction.EVICT]
    assert decision.id == short and decision.rule == "expires_at"
    assert state(mem, short) is MemoryState.ARCHIVED
    assert state(mem, keep) is MemoryState.ACTIVE
    last = mem.history(short)[-1]
    assert last.event is VersionEvent.DELETE and last.source == "gc"
    assert last.reason is not None and last.reason.startswith("evicted: expired")
    assert mem.restore(short).state is MemoryState.ACTIVE


def test_search_archives_expired_memories_first(mem: Memory) -> None:
    (gone,) = facts(mem, ["the code is 1234"], expires_at=NOW - timedelta(seconds=1))
    (kept,) = facts(mem, ["the code used to be 9876"])
    assert [h.id for h in mem.search("code", user_id="alice")] == [kept]
    assert state(mem, gone) is MemoryState.ARCHIVED


def test_ttl_input_is_checked(mem: Memory) -> None:
    with pytest.raises(ValidationError, match="not both"):
        facts(mem, ["x"], ttl=60, expires_at=later(1))
    with pytest.raises(ValidationError, match="positive"):
        facts(mem, ["x"], ttl=-5)
    with pytest.raises(ValidationError, match="expires_at"):
        facts(mem, ["x"], expires_at="next tuesday")
    assert mem.owners() == []  # nothing written


def test_policy_ttl_and_pinned_survives(tmp_path: Path) -> None:
    with open_memory(tmp_path, policies={"fact": {"ttl_days": 30}}) as mem:
        a, b = facts(mem, ["old fact a", "old fact b"])
        mem.pin(b, reason="the user asked to keep it")
        report = mem.gc(user_id="alice", at=later(31))
        assert [(d.id, d.rule) for d in report.decisions] == [(a, "ttl")]
        assert state(mem, b) is MemoryState.ACTIVE
        reasons = [v.reason for v in mem.history(b)]
        assert "the user asked to keep it" in reasons
        mem.unpin(b)
        assert mem.gc(user_id="alice", at=later(31)).evicted == 1
        assert state(mem, b) is MemoryState.ARCHIVED


# -- capacity and forgetting -----------------------------------------------------------------


def test_capacity_evicts_the_weakest_first_and_pinned_survive(tmp_path: Path) -> None:
    with open_memory(tmp_path, policies={"fact": {"max_active": 3}}) as mem:
        ids = facts(mem, [f"fact {i}" for i in range(6)])
        for i, memory_id in enumerate(ids):
            mem.update(memory_id, metadata={"importance": (i + 1) / 10})
        mem.pin(ids[0])  # the least important, but pinned
        report = mem.gc(user_id="alice", dry_run=True)
        evicted = [d for d in report.decisions if d.action is GcAction.EVICT]
        assert [d.id for d in evicted] == [ids[1], ids[2], ids[3]]  # weakest first
        assert all(d.rule == "capacity" for d in evicted)
        assert evicted[0].importance == pytest.approx(0.2)
        assert "budget of 3" in evicted[0].reason
        mem.gc(user_id="alice")
        active = [i for i in ids if state(mem, i) is MemoryState.ACTIVE]
        assert active == [ids[0], ids[4], ids[5]]


def test_capacity_prefers_evicting_the_less_retrievable(tmp_path: Path) -> None:
    with open_memory(tmp_path, policies={"*": {"max_active": 2}}) as mem:
        a, b, c = facts(mem, ["a fact", "b fact", "c fact"])
        cube = mem.cube(_scope("alice"))
        mem.lifecycle.reinforce(cube.id, [mem.store.locate(a).key], at=later(20))
        mem.lifecycle.reinforce(cube.id, [mem.store.locate(c).key], at=later(20))
        report = mem.gc(user_id="alice", at=later(21))
        (d,) = report.decisions
        assert d.id == b and d.rule == "capacity" and "all types" in d.reason
        assert d.retrievability < 0.5


def test_forgotten_memories_go_but_the_working_buffer_stays(tmp_path: Path) -> None:
    settings = {"working": {"size": 1}, "policies": {"*": {"min_retrievability": 0.2}}}
    with open_memory(tmp_path, **settings) as mem:
        old, recent = mem.add(["old turn", "recent turn"], user_id="alice", session_id="s")
        (fact,) = facts(mem, ["a long-lived fact"])
        mem.reinforce(fact)
        report = mem.gc(user_id="alice", at=later(300))
        rules = {(d.id, d.action, d.rule) for d in report.decisions}
        assert (old.id, GcAction.DISPLACE, "working") in rules
        assert (old.id, GcAction.EVICT, "forgotten") in rules
        assert (fact, GcAction.EVICT, "forgotten") in rules  # one recall is not enough
        assert state(mem, recent.id) is MemoryState.ACTIVE


# -- consolidation ---------------------------------------------------------------------------


def test_consolidation_promotes_recalled_memories(mem: Memory) -> None:
    turns = mem.add(["I am allergic to peanuts", "nice weather"], user_id="alice", session_id="s")
    mem.feedback("allergies?", cited=[turns[0].id], user_id="alice")
    mem.feedback("what can't alice eat?", used=[turns[0].id], user_id="alice")
    report = mem.gc(user_id="alice")
    (promoted,) = [d for d in report.decisions if d.action is GcAction.PROMOTE]
    assert promoted.id == turns[0].id and promoted.rule == "recalls"
    info = mem.retention(turns[0].id)
    assert info.tier is Tier.LONG_TERM and info.strength_days >= 90.0
    last = mem.history(turns[0].id)[-1]
    assert last.event is VersionEvent.UPDATE and last.source == "gc"
    assert last.reason == "consolidated: recalled 2 times"
    assert mem.retention(turns[1].id).tier is Tier.WORKING


def test_consolidation_promotes_what_recurs_across_sessions(mem: Memory) -> None:
    a = mem.add(["I am a vegetarian", "thanks"], user_id="alice", session_id="s1")
    b = mem.add(["as I said, I am a vegetarian"], user_id="alice", session_id="s2")
    c = mem.add(["I am a vegetarian", "thanks"], user_id="alice", session_id="s3")
    report = mem.gc(user_id="alice")
    promoted = {d.id: d.reason for d in report.decisions if d.action is GcAction.PROMOTE}
    assert set(promoted) == {a[0].id, c[0].id}  # "thanks" is too short to count
    assert promoted[a[0].id] == "consolidated: near-duplicates in 2 sessions"
    assert mem.retention(b[0].id).tier is Tier.WORKING


# -- gc: dry run, transactions, policies ------------------------------------------------------


def test_gc_dry_run_changes_nothing_and_predicts_the_real_run(tmp_path: Path) -> None:
    with open_memory(tmp_path, working={"size": 1}, policies={"fact": {"max_active": 1}}) as mem:
        mem.add(["t1", "t2", "t3"], user_id="alice", session_id="s")
        facts(mem, ["f1", "f2"], ttl=3600)
        before = all_table_bytes(db_path(tmp_path))
        dry = mem.gc(at=later(1), dry_run=True)
        assert dry.dry_run and dry.evicted == 2 and dry.displaced == 2
        assert all_table_bytes(db_path(tmp_path)) == before
        real = mem.gc(at=later(1))
        assert not real.dry_run
        strip = [(d.id, d.action, d.rule, d.reason) for d in dry.decisions]
        assert [(d.id, d.action, d.rule, d.reason) for d in real.decisions] == strip
        assert mem.gc(at=later(1)).decisions == []  # nothing left to do


def test_gc_is_one_transaction(tmp_path: Path) -> None:
    with open_memory(tmp_path, working={"size": 1}) as mem:
        turns = mem.add(["t1", "t2", "t3"], user_id="alice", session_id="s")
        ids = facts(mem, ["f1", "f2", "f3"], ttl=60)
        last_key = mem.store.locate(ids[-1]).key
        conn = sqlite3.connect(db_path(tmp_path))
        conn.execute(
            "CREATE TRIGGER fail_last AFTER INSERT ON versions "
            f"WHEN NEW.memory_key = {last_key} AND NEW.source = 'gc' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        conn.commit()
        conn.close()
        before = all_table_bytes(db_path(tmp_path))
        with pytest.raises(StoreError, match="nothing was changed"):
            mem.gc(user_id="alice", at=later(1))
        assert all_table_bytes(db_path(tmp_path)) == before
        assert [state(mem, i) for i in ids] == [MemoryState.ACTIVE] * 3
        assert mem.retention(turns[0].id).tier is Tier.WORKING
        assert len(mem.search("f1", user_id="alice", k=10)) >= 3  # the index was not touched


def test_owner_policy_overrides_config_per_type(tmp_path: Path) -> None:
    config = {"*": {"ttl_days": 10, "importance": 0.5}, "fact": {"max_active": 5}}
    with open_memory(tmp_path, policies=config) as mem:
        facts(mem, ["f"])
        assert mem.retention_policy(user_id="alice", memory_type="fact").model_dump() == {
            "max_active": 5,
            "ttl_days": 10,
            "min_retrievability": None,
            "importance": 0.5,
        }
        mem.set_retention_policy(user_id="alice", memory_type="fact", max_active=2)
        mem.set_retention_policy(user_id="alice", ttl_days=None)
        effective = mem.retention_policy(user_id="alice", memory_type="fact")
        assert effective.max_active == 2 and effective.ttl_days is None
        assert mem.retention_policy(user_id="bob", memory_type="fact").max_active == 5
        assert mem.retention_policy(user_id="alice").max_active is None  # '*' not inherited
        mem.set_retention_policy(user_id="alice", memory_type="fact", reset=True)
        assert mem.retention_policy(user_id="alice", memory_type="fact").max_active == 5
        with pytest.raises(ValidationError, match="min_retrievability"):
            mem.set_retention_policy(user_id="alice", min_retrievability=2)
        with pytest.raises(ValidationError, match="max_memories"):
            mem.set_retention_policy(user_id="alice", max_memories=3)


def test_gc_scope_and_flags_are_checked(mem: Memory) -> None:
    facts(mem, ["f"])
    mem.add("bob's", user_id="bob", memory_type="fact")
    assert mem.gc(user_id="alice").owners == ["user:alice"]
    assert sorted(mem.gc().owners) == ["user:alice", "user:bob"]
    with pytest.raises(ValidationError):
        mem.gc(user_id="alice", dry_run="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="whole owner"):
        mem.gc(user_id="alice", agent_id="bot")


def test_other_owners_ids_are_not_found(mem: Memory) -> None:
    (m,) = facts(mem, ["alice's secret"])
    from engram.errors import NotFoundError

    for verb in (mem.pin, mem.unpin, mem.reinforce, mem.retention):
        with pytest.raises(NotFoundError):
            verb(m, user_id="bob")


# -- erasure ----------------------------------------------------------------------------------


def test_hard_delete_still_erases_everything(tmp_path: Path) -> None:
    with open_memory(tmp_path, working={"size": 1}) as mem:
        turns = mem.add(["zebracorn secret one", "zebracorn two"], user_id="zed", session_id="s")
        mem.pin(turns[0].id, reason="zebracorn pin")
        mem.feedback("zebracorn?", cited=[turns[1].id], user_id="zed")
        mem.set_retention_policy(user_id="zed", max_active=10)
        mem.gc(user_id="zed")
        assert mem.delete_all(user_id="zed", hard=True) == 2
        dump = all_table_bytes(db_path(tmp_path))
        assert not any(b"zebracorn" in cells for cells in dump.values())
        assert not any(b"user:zed" in cells for cells in dump.values())
        conn = sqlite3.connect(db_path(tmp_path))
        assert conn.execute("SELECT COUNT(*) FROM retention_policies").fetchone()[0] == 0
        conn.close()


# -- async and CLI ----------------------------------------------------------------------------


def test_async_memory_has_the_retention_verbs(mem: Memory) -> None:
    import asyncio

    from engram import AsyncMemory

    (m,) = facts(mem, ["async fact"])

    async def go() -> tuple[bool, int]:
        am = AsyncMemory(memory=mem)
        info = await am.pin(m)
        report = await am.gc(user_id="alice", dry_run=True)
        return info.pinned, len(report.decisions)

    assert asyncio.run(go()) == (True, 0)


def test_cli_gc_pin_unpin_retention(tmp_path: Path) -> None:
    home = tmp_path / "store"  # gc, pin, unpin and retention never load the embedder
    with open_memory(home, working={"size": 1}) as mem:
        turns = mem.add(["one", "two", "three"], user_id="alice", session_id="s")
    runner = CliRunner()

    def cli(*args: str) -> Any:
        result = runner.invoke(app, ["--home", str(home), "--json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    pinned = cli("pin", turns[0].id, "--reason", "keep")
    assert pinned["pinned"] is True
    dry = cli("gc", "--dry-run", "-u", "alice")
    assert dry["dry_run"] is True and len(dry["decisions"]) == 0  # CLI config: 20 per buffer
    assert cli("retention", turns[0].id)["tier"] == "working"
    assert cli("unpin", turns[0].id)["pinned"] is False
    report = cli("gc", "--all", "--at", later(1).isoformat())
    assert report["owners"] == ["user:alice"]
    text = runner.invoke(app, ["--home", str(home), "gc", "--dry-run"])
    assert text.exit_code == 0 and "would: evict 0" in text.stdout
    bad = runner.invoke(app, ["--home", str(home), "gc", "--all", "-u", "alice"])
    assert bad.exit_code == 2


def _scope(user: str) -> Any:
    from engram.scope import Scope

    return Scope.of(user_id=user)


def test_a_store_from_before_retention_is_migrated(tmp_path: Path) -> None:
    import numpy as np

    from engram.store.migrations import MIGRATIONS, _statements

    path = db_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    names = [name for name, _ in MIGRATIONS]
    for name, script in MIGRATIONS[: names.index("0004_retention")]:
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, '2024-01-01T00:00:00')", (name,))
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)", [("embedder.name", "hash-bow-64"), ("embedder.dim", "64")]
    )
    conn.execute("INSERT INTO cubes (owner, created_at) VALUES ('user:alice', '2024-01-01')")
    vector = np.ones(64, dtype=np.float16) / 8
    conn.execute(
        "INSERT INTO memories (id, cube_id, type, text, source, created_at, updated_at, "
        "embedding) VALUES ('old-1', 1, 'turn', 'an old turn', 'api', "
        "'2024-01-01T00:00:00.000000', '2024-01-01T00:00:00.000000', ?)",
        (vector.tobytes(),),
    )
    conn.execute("INSERT INTO memories_fts (rowid, body, cube) VALUES (1, 'an old turn', 'c1')")
    conn.commit()
    conn.close()
    with open_memory(tmp_path, policies={"turn": {"ttl_days": 365}}) as mem:
        info = mem.retention("old-1")
        assert info.tier is Tier.LONG_TERM and not info.pinned and info.recall_count == 0
        assert info.strength_days == 14.0 and info.retrievability < 0.2  # stored long ago
        (d,) = mem.gc(user_id="alice").decisions
        assert d.id == "old-1" and d.rule == "ttl"


@pytest.mark.parametrize(
    "retention, problem",
    [
        ({"decay": "linear"}, "unknown decay law"),
        ({"working": {"replacement": "random"}}, "unknown working-memory replacement"),
        ({"policies": {"not a type": {}}}, "not '\\*' or a memory type"),
        ({"policies": {"*": {"max_active": 0}}}, "max_active"),
        ({"growth": -1}, "growth"),
    ],
)
def test_bad_retention_settings_fail_at_start(
    tmp_path: Path, retention: dict[str, Any], problem: str
) -> None:
    from engram.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        Memory(home=tmp_path, embedder=HashEmbedder(), retention=retention)


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), 1e300, -5, 0, "1d", True])
def test_bad_ttl_is_a_validation_error(memory, ttl) -> None:  # noqa: ANN001
    from engram.errors import ValidationError

    with pytest.raises(ValidationError, match="ttl"):
        memory.add("short-lived", user_id="alice", ttl=ttl)
    assert memory.owners() == []
