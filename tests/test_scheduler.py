"""The scheduler: policies decide from each memory's use which tier holds it; plans are
pure reads; moves run as jobs on the store's queue and write a version into the memory's
history; an erasure after a move leaves no artifact.

Models: the packaged Engram LM (`kv.model` and `lora.base_model` default to it)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _engram_helpers import all_table_bytes, db_path
from engram import AsyncMemory, Memory
from engram.cli import app
from engram.config import load_config
from engram.embed import Embedder
from engram.errors import ConfigError
from engram.scheduler import POLICIES, Place
from engram.tiers import ACTIVATION, PARAMETRIC

# four memories a query finds by its own rare words, and two others
TEXTS = {
    "a": "Zephyrine hides the vault code under the cobalt frog.",
    "b": "Quentin Marlowe breeds silver axolotls in Tarragona.",
    "c": "Odalys Fenwick repairs antique harpsichords on Thursdays.",
    "d": "Bramwell Okonkwo sails a red catamaran around Zanzibar.",
    "e": "The weather was mild and nobody said much at lunch.",
    "f": "Someone mentioned a film they had seen years ago.",
}
QUERIES = {
    "a": "Zephyrine cobalt frog vault",
    "b": "Quentin axolotls Tarragona",
    "c": "Odalys harpsichords Thursdays",
    "d": "Bramwell catamaran Zanzibar",
}
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _open(home: Path, embedder: Embedder, **scheduler: Any) -> Memory:
    return Memory(
        home=home,
        embedder=embedder,
        lora={"epochs": 1},  # the configured safeguards (replay, distill, lr-rewarm) stay on
        answer={"model": "engram-lm"},  # the model the scheduler builds KV blocks for
        scheduler=scheduler,
    )


def _blocks(m: Memory) -> list[Any]:
    """The owner's memory blocks (the answer prompt's head block is not one)."""
    return [e for e in m.kv.ls(user_id="alice") if e.meta.get("part") != "head"]


def _add(m: Memory, *names: str, memory_type: str = "turn") -> dict[str, str]:
    return {n: m.add(TEXTS[n], user_id="alice", memory_type=memory_type)[0].id for n in names}


def _ask(m: Memory, name: str, times: int) -> None:
    for _ in range(times):
        hits = m.search(QUERIES[name], user_id="alice", k=1)
        assert hits[0].memory == TEXTS[name]


def _later(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def _last_reason(m: Memory, memory_id: str) -> str:
    last = m.history(memory_id, user_id="alice")[-1]
    assert last.source == "scheduler" or last.reason is not None
    return last.reason or ""


def test_policies_are_registered_once_and_checked_by_config() -> None:
    assert {"hot-to-kv", "confirmed-to-adapter", "cold-decay"} <= set(POLICIES)
    assert load_config(scheduler={"policies": ["cold-decay"]}).scheduler.policies == ["cold-decay"]
    with pytest.raises(ConfigError, match=r"unknown scheduler policies \['warm-to-kv'\]"):
        load_config(scheduler={"policies": ["warm-to-kv"]})
    with pytest.raises(ConfigError, match="repeat"):
        load_config(scheduler={"policies": ["cold-decay", "cold-decay"]})
    with pytest.raises(ConfigError, match="scheduler.kv.budget_bytes"):
        load_config(scheduler={"kv": {"budget_bytes": -1}})
    with pytest.raises(ConfigError, match="scheduler.bogus"):
        load_config(scheduler={"bogus": 1})


def test_hot_set_gets_kv_blocks_within_the_budget_and_the_coldest_are_evicted(
    tmp_path: Path, embedder: Embedder
) -> None:
    home = tmp_path / "home"
    m = _open(home, embedder, policies=["hot-to-kv"], kv={"min_heat": 1.5})
    ids = _add(m, *TEXTS)
    _ask(m, "c", 3)
    _ask(m, "d", 2)
    first = m.schedule(user_id="alice", dry_run=False)
    assert {(mv.ids[0], mv.action) for mv in first.moves} == {
        (ids["c"], "build"),
        (ids["d"], "build"),
    }
    assert first.queued == 1 and m.kv.ls(user_id="alice") == []  # queued, not run here
    m.run_jobs()
    blocks = m.kv.ls(user_id="alice")
    sizes = [e.nbytes for e in blocks if e.meta.get("part") == "segment"]
    assert len(sizes) == 2 and len(blocks) == 3  # + the answer prompt's head, built once
    m.close()

    budget = int(2.5 * max(sizes))  # room for two memories' blocks (the head is not one)
    m = _open(home, embedder, policies=["hot-to-kv"], kv={"min_heat": 1.5, "budget_bytes": budget})
    try:
        _ask(m, "a", 6)
        _ask(m, "b", 5)
        plan = m.schedule(user_id="alice")
        moves = [(mv.action, mv.ids[0]) for mv in plan.moves]
        assert moves == [
            ("build", ids["a"]),
            ("build", ids["b"]),
            ("evict", ids["d"]),  # coldest block first
            ("evict", ids["c"]),
        ]
        assert all(mv.rule == "hot-to-kv" for mv in plan.moves)
        assert "budget full" in plan.moves[-1].reason
        assert plan.kv_bytes <= budget == plan.kv_budget_bytes

        m.schedule(user_id="alice", dry_run=False)
        m.run_jobs()
        held = {e.key for e in m.kv.ls(user_id="alice")}
        for name in "ab":
            tiers = {h.tier: h for h in m.tiers(ids[name], user_id="alice")}
            assert tiers[ACTIVATION].key in held and tiers[ACTIVATION].current
            assert _last_reason(m, ids[name]).startswith("hot-to-kv: text -> activation: heat")
        for name in "cd":
            assert {h.tier for h in m.tiers(ids[name], user_id="alice")} == {"text"}
            assert _last_reason(m, ids[name]).startswith("hot-to-kv: activation -> text:")
        kept = [e for e in m.kv.ls(user_id="alice") if e.meta.get("part") == "segment"]
        assert sum(e.nbytes for e in kept) <= budget
        assert m.schedule(user_id="alice").moves == []  # settled
    finally:
        m.close()


def test_confirmed_stable_facts_are_learned_by_the_next_adapter_batch(
    tmp_path: Path, embedder: Embedder
) -> None:
    m = _open(
        tmp_path / "home",
        embedder,
        policies=["confirmed-to-adapter"],
        adapter={"min_confirmations": 2, "max_text_changes": 0},
    )
    try:
        ids = _add(m, "a", "b", "c", "d", memory_type="fact")
        for name in "abc":
            m.feedback(QUERIES[name], cited=[ids[name]], user_id="alice")
            m.feedback(QUERIES[name], used=[ids[name]], user_id="alice")
        m.feedback(QUERIES["b"], wrong=[ids["b"]], user_id="alice")  # confirmed, then wrong
        short = m.add("Sure.", user_id="alice", memory_type="fact")[0].id  # no fact to learn
        for _ in range(2):
            m.feedback("sure", cited=[short], user_id="alice")
        m.update(ids["c"], "Odalys Fenwick repairs harpsichords on Fridays.", user_id="alice")
        assert m.schedule(user_id="alice").moves == []  # too young: 7 days by default
        plan = m.schedule(user_id="alice", at=_later(10))
        (move,) = plan.moves
        assert move.ids == [ids["a"]] and move.to_tier is Place.PARAMETRIC
        assert move.rule == "confirmed-to-adapter" and move.reason.startswith("confirmed 2x")

        queued = m.schedule(user_id="alice", dry_run=False, at=_later(10))
        assert queued.queued == 1 and m.lora.ls(user_id="alice") == []
        (job,) = [j for j in m.jobs(user_id="alice") if j.extractor == "scheduler:adapter"]
        assert job.state.value == "queued" and ids["a"] not in json.dumps(job.payload)
        m.run_jobs()
        (adapter,) = m.lora.ls(user_id="alice")
        assert adapter.memory_ids == [ids["a"]]
        assert list(adapter.safeguards) == ["replay", "distill", "lr-rewarm"]
        held = {h.tier: h for h in m.tiers(ids["a"], user_id="alice")}
        assert held[PARAMETRIC].key == "v1" and held[PARAMETRIC].current
        assert _last_reason(m, ids["a"]).startswith("confirmed-to-adapter: text -> parametric")
        assert m.schedule(user_id="alice", at=_later(10)).moves == []  # learned already
    finally:
        m.close()


def test_weak_cold_memories_decay_into_the_archive(tmp_path: Path, embedder: Embedder) -> None:
    m = _open(
        tmp_path / "home", embedder, policies=["cold-decay"], decay={"max_retrievability": 0.3}
    )
    try:
        facts = _add(m, "a", "b", memory_type="fact")
        turns = _add(m, "c", "e")  # in the working buffer
        m.pin(facts["b"], user_id="alice")
        for _ in range(2):  # recalled twice: gc consolidates it (strength 90 days)
            m.feedback(QUERIES["c"], cited=[turns["c"]], user_id="alice")
        m.gc(user_id="alice")
        assert m.retention(turns["c"], user_id="alice").tier.value == "long_term"
        assert m.schedule(user_id="alice", at=_later(20)).moves == []  # not cold yet
        plan = m.schedule(user_id="alice", at=_later(60))
        (move,) = plan.moves
        assert move.ids == [facts["a"]] and move.to_tier is Place.ARCHIVE
        assert move.reason.startswith("retrievability 0.2") and move.score < 0.3

        m.schedule(user_id="alice", dry_run=False, at=_later(60))
        m.run_jobs()
        assert m.get(facts["a"], user_id="alice").state.value == "archived"
        last = m.history(facts["a"], user_id="alice")[-1]
        assert last.event.value == "delete" and last.source == "scheduler"
        assert last.reason is not None and last.reason.startswith("cold-decay: text -> archive")
        for kept in (facts["b"], *turns.values()):
            assert m.get(kept, user_id="alice").state.value == "active"
        m.restore(facts["a"], user_id="alice")  # archived, not lost
    finally:
        m.close()


def _files(home: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(home)): p.read_bytes()
        for sub in ("kv", "lora")
        for p in sorted((home / sub).rglob("*"))
        if p.is_file()
    }


def test_a_dry_run_changes_nothing(tmp_path: Path, embedder: Embedder) -> None:
    home = tmp_path / "home"
    m = _open(
        home,
        embedder,
        policies=["confirmed-to-adapter", "hot-to-kv", "cold-decay"],
        heat_half_life_days=1000,
        kv={"min_heat": 1.0},
        adapter={"min_confirmations": 1, "min_age_days": 0, "stable_days": 0},
        decay={"max_retrievability": 0.9, "cold_days": 0},
    )
    try:
        ids = _add(m, "a", "b", "c", memory_type="fact")
        _ask(m, "a", 2)
        m.feedback(QUERIES["b"], cited=[ids["b"]], user_id="alice")
        m.access.flush()  # type: ignore[union-attr]
        before = all_table_bytes(db_path(home)), _files(home)
        plan = m.schedule(user_id="alice", dry_run=True, at=_later(30))
        again = m.schedule(user_id="alice", at=_later(30))
        assert {mv.action for mv in plan.moves} >= {"build", "learn", "archive"}
        assert plan.dry_run and plan.queued == 0 and again.moves == plan.moves
        assert (all_table_bytes(db_path(home)), _files(home)) == before
        assert [len(m.history(i, user_id="alice")) for i in ids.values()] == [1, 1, 1]
    finally:
        m.close()


def test_erasing_a_memory_after_its_moves_leaves_no_artifact(
    tmp_path: Path, embedder: Embedder
) -> None:
    home = tmp_path / "home"
    m = _open(
        home,
        embedder,
        policies=["hot-to-kv", "confirmed-to-adapter"],
        kv={"min_heat": 1.0},
        adapter={"min_confirmations": 1, "min_age_days": 0, "stable_days": 0},
    )
    try:
        ids = _add(m, "a", "b", memory_type="fact")
        _ask(m, "a", 3)
        for name in "ab":
            m.feedback(QUERIES[name], cited=[ids[name]], user_id="alice")
        m.schedule(user_id="alice", dry_run=False)
        m.run_jobs()
        m.schedule(user_id="alice", dry_run=False)  # blocks held: now their turn to learn
        m.run_jobs()
        for memory_id in ids.values():
            held = {h.tier for h in m.tiers(memory_id, user_id="alice")}
            assert held == {"text", ACTIVATION, PARAMETRIC}
        m.delete(ids["a"], hard=True, user_id="alice")
        assert [e.meta["memory_ids"] for e in _blocks(m)] == [[ids["b"]]]
        assert all(ids["a"] not in v.memory_ids for v in m.lora.ls(user_id="alice"))
        assert m.store.artifacts(memory_ids=[ids["a"]]) == []
        assert not any(TEXTS["a"].encode() in blob for blob in _files(home).values())
        jobs = json.dumps([j.payload for j in m.jobs(user_id="alice")])
        assert ids["a"] not in jobs and TEXTS["a"] not in jobs
    finally:
        m.close()


def test_cli_tiers_plan_and_run(tmp_path: Path, embedder: Embedder) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[scheduler]\npolicies = ["hot-to-kv"]\n')
    m = _open(home, embedder, policies=["hot-to-kv"])
    ids = _add(m, "a", "b")
    _ask(m, "a", 4)
    m.close()
    planned = runner.invoke(app, ["--home", str(home), "tiers", "plan", "-u", "alice"])
    assert planned.exit_code == 0, planned.output
    assert "build" in planned.output and ids["a"][:8] in planned.output
    assert max(len(line) for line in planned.output.splitlines()) <= 80
    listed = runner.invoke(app, ["--home", str(home), "--json", "tiers", "plan"])
    (plan,) = json.loads(listed.output)
    assert plan["dry_run"] and plan["moves"][0]["ids"] == [ids["a"]]
    assert plan["moves"][0]["action"] == "build"
    ran = runner.invoke(app, ["--home", str(home), "--json", "tiers", "run", "--now"])
    assert ran.exit_code == 0, ran.output
    out = json.loads(ran.output)
    assert out["plans"][0]["queued"] == 1
    assert [j["result"]["built"] for j in out["jobs"] if j["extractor"] == "scheduler:kv"] == [1]


def test_bench_workload_spreads_sessions_and_skews_questions() -> None:
    from random import Random

    from engram.bench.scheduler import arrivals, zipf_draws
    from engram.importers.locomo import Question
    from engram.text.adding import AddRequest

    requests = [AddRequest(messages=f"turn {i}", user_id="alice") for i in range(5)]
    days = arrivals(requests, 3)
    assert [len(d) for d in days] == [2, 2, 1] and sum(days, []) == requests
    assert [len(d) for d in arrivals(requests[:2], 4)] == [1, 1, 0, 0]
    questions = [Question(f"q{i}", None, 4, [f"D1:{i}"]) for i in range(20)]
    counts = Counter(zipf_draws(questions, 2000, 1.1, Random(0)))
    assert counts[0] > counts[1] > counts[5] > counts[19] > 0  # a few asked often
    assert zipf_draws([], 10, 1.1, Random(0)) == []


def test_a_block_of_changed_text_is_rebuilt_and_the_old_one_goes(
    tmp_path: Path, embedder: Embedder
) -> None:
    m = _open(tmp_path / "home", embedder, policies=["hot-to-kv"], kv={"min_heat": 1.0})
    try:
        ids = _add(m, "a", "b")
        _ask(m, "a", 2)
        m.schedule(user_id="alice", dry_run=False)
        m.run_jobs()
        (old,) = _blocks(m)
        m.update(ids["a"], "Zephyrine hides the vault code under the jade frog.", user_id="alice")
        (move,) = m.schedule(user_id="alice").moves
        assert move.action == "build" and "rebuilt" in move.reason
        m.schedule(user_id="alice", dry_run=False)
        m.run_jobs()
        (new,) = _blocks(m)
        assert new.key != old.key and new.meta["memory_ids"] == [ids["a"]]
        held = {h.tier: h for h in m.tiers(ids["a"], user_id="alice")}
        assert held[ACTIVATION].key == new.key and held[ACTIVATION].current
    finally:
        m.close()


def test_the_worker_thread_runs_queued_moves_off_the_request_path(
    tmp_path: Path, embedder: Embedder
) -> None:
    m = Memory(
        home=tmp_path / "home",
        embedder=embedder,
        extract={"worker": "thread", "enqueue": False},
        answer={"model": "engram-lm"},
        scheduler={"policies": ["hot-to-kv"], "kv": {"min_heat": 1.0}},
    )
    try:
        ids = _add(m, "a", "b")
        _ask(m, "a", 2)

        async def plan() -> Any:
            return await AsyncMemory(memory=m).schedule(user_id="alice")

        assert asyncio.run(plan()).moves == m.schedule(user_id="alice").moves
        started = time.perf_counter()
        queued = m.schedule(user_id="alice", dry_run=False)
        assert queued.queued == 1 and time.perf_counter() - started < 2  # no model loaded here
        deadline = time.monotonic() + 120
        while not _blocks(m) and time.monotonic() < deadline:
            time.sleep(0.2)
        (block,) = _blocks(m)
        assert block.meta["memory_ids"] == [ids["a"]]
    finally:
        m.close()


@pytest.mark.slow
def test_bench_replays_a_locomo_file_in_three_arms(tmp_path: Path, embedder: Embedder) -> None:
    from engram.bench.scheduler import ARMS, Workload, markdown, run

    turns = [
        ("D1:1", "Maya", "I finally moved to Lisbon in May."),
        ("D1:2", "Tomas", "My greyhound Biscuit loves the beach."),
        ("D2:1", "Maya", "I started teaching piano on Tuesdays."),
        ("D2:2", "Tomas", "Biscuit learned to open the fridge."),
    ]
    conversation: dict[str, Any] = {"speaker_a": "Maya", "speaker_b": "Tomas"}
    for session in (1, 2):
        conversation[f"session_{session}_date_time"] = f"1:56 pm on {session} May, 2023"
        conversation[f"session_{session}"] = [
            {"dia_id": d, "speaker": s, "text": t} for d, s, t in turns if d[1] == str(session)
        ]
    qa = [
        {"question": "Where did Maya move?", "answer": "Lisbon", "evidence": ["D1:1"]},
        {"question": "What does Biscuit open?", "answer": "fridge", "evidence": ["D2:2"]},
    ]
    data = tmp_path / "tiny-locomo.json"
    data.write_text(json.dumps([{"sample_id": "s0", "conversation": conversation, "qa": qa}]))
    result = run(data, 0, Workload(2, 4, 1.1, 2, 0, 1 << 20), embedder)
    for arm in ARMS:
        assert [d["questions"] for d in result["arms"][arm]] == [4, 4]
    recall = {arm: [d["recall@2"] for d in result["arms"][arm]] for arm in ARMS}
    assert recall["none"] == recall["scheduler"] == recall["all"]  # text recall unchanged
    last = {arm: result["arms"][arm][-1] for arm in ARMS}
    assert last["none"]["routes"]["text"] == 1.0 and last["none"]["bytes"]["activation"] == 0
    assert result["moves"]["all"]["build"] == 4  # each day's arrivals, at the end of the day
    assert last["all"]["kv_hit_rate"] >= last["scheduler"]["kv_hit_rate"] > 0
    assert last["scheduler"]["bytes"]["activation"] <= 1 << 20
    assert last["none"]["adapter_recall"] is None  # no adapter: no recall measured
    assert 0.0 <= last["all"]["base_recall"] <= 1.0 and 0.0 <= last["all"]["adapter_recall"] <= 1.0
    table = markdown(result, "engram bench scheduler")
    assert table.count("| 1 | scheduler |") == 1 and "Moves:" in table
    assert "| 1 | none | 1.00 / 0.00 / 0.00 |" in table and "adapter recall (base)" in table
