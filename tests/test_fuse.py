"""Fuse (docs/bundles.md#fuse): cube B merged into cube A on SQLite and PostgreSQL — a
near-duplicate becomes one memory with both provenances in its history, a conflict a new
version with the reason (the old text kept), the rest copies with provenance; a dry run
writes nothing; B is unchanged; a re-run or a failed run never duplicates; every memory of
B is accounted for. The LLM decision is the LLM extractor's, against a scripted endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engram import Memory
from engram.cli import app
from engram.embed import Embedder
from engram.errors import NotFoundError, StoreError, ValidationError
from engram.fuse import FuseReport
from engram.store.base import Change
from engram.types import MemoryItem, MemoryState, VersionEvent

runner = CliRunner()


@pytest.fixture
def memory(tmp_path: Path, embedder: Embedder, store_settings: dict[str, Any]) -> Iterator[Memory]:
    """A Memory of each backend (overrides conftest's SQLite-only one)."""
    m = Memory(home=tmp_path / "home", embedder=embedder, **store_settings)
    try:
        yield m
    finally:
        m.close()


def _seed(m: Memory) -> dict[str, MemoryItem]:
    """alice (A) and bob (B): a key conflict, an exact and a near duplicate, a pinned new
    fact, an archived memory."""
    fact = "fact"
    got = {
        "lisbon": m.add(
            [{"content": "Maya lives in Lisbon.", "source_id": "k1"}],
            user_id="alice",
            memory_type=fact,
        )[0],
        "pixel": m.add("Maya adopted a greyhound named Pixel.", user_id="alice", memory_type=fact)[
            0
        ],
        "porto": m.add(
            [{"content": "Maya lives in Porto.", "source_id": "k1"}],
            user_id="bob",
            memory_type=fact,
        )[0],
        "same": m.add("maya adopted a greyhound named pixel", user_id="bob", memory_type=fact)[0],
        "near": m.add("Maya adopted a greyhound called Pixel.", user_id="bob", memory_type=fact)[0],
        "cello": m.add("Tomas plays the cello.", user_id="bob", memory_type=fact)[0],
        "gone": m.add("A note bob archived.", user_id="bob")[0],
    }
    m.pin(got["cello"].id, reason="keep", user_id="bob")
    m.delete(got["gone"].id, reason="obsolete", user_id="bob")
    return got


def _everything(m: Memory, user: str) -> dict[str, Any]:
    items = m.get_all(user_id=user, include_archived=True, limit=1000).items
    return {
        i.id: (i.memory, i.version, i.state, i.metadata, [v.model_dump() for v in m.history(i.id)])
        for i in items
    }


def _by_source(report: FuseReport) -> dict[str, Any]:
    return {a.source.id: a for a in report.actions}


def test_a_dry_run_lists_every_action_and_writes_nothing(memory: Memory) -> None:
    seeded = _seed(memory)
    before = (_everything(memory, "alice"), _everything(memory, "bob"))
    report = memory.fuse_cube("user:bob", "user:alice", dry_run=True)
    assert (_everything(memory, "alice"), _everything(memory, "bob")) == before
    got = _by_source(report)
    assert report.dry_run and report.threshold == 0.95
    assert [got[seeded[k].id].action for k in ("porto", "same", "near", "cello", "gone")] == [
        "conflict",
        "merge",
        "merge",
        "add",
        "skip",
    ]
    assert got[seeded["porto"].id].target.id == seeded["lisbon"].id
    assert got[seeded["near"].id].target.id == seeded["pixel"].id
    assert 0.95 <= got[seeded["near"].id].score < 1.0
    assert {a["action"] for a in report.as_dict()["actions"]} == {
        "conflict",
        "merge",
        "add",
        "skip",
    }


def test_fuse_merges_conflicts_adds_and_leaves_the_source_unchanged(memory: Memory) -> None:
    seeded = _seed(memory)
    bob_before = _everything(memory, "bob")
    report = memory.fuse_cube("user:bob", "user:alice")
    assert report.as_dict()["counts"] == {"merge": 2, "conflict": 1, "add": 1, "skip": 1}
    assert _everything(memory, "bob") == bob_before

    # the conflict: a new version with bob's text and the reason; the old text stays
    lisbon = memory.get(seeded["lisbon"].id)
    assert lisbon.memory == "Maya lives in Porto."
    old, new = memory.history(lisbon.id)
    assert old.memory == "Maya lives in Lisbon." and new.event is VersionEvent.UPDATE
    porto = seeded["porto"]
    assert new.source == "fuse" and f"user:bob memory {porto.id} v1" in (new.reason or "")
    assert memory.search("Porto", user_id="alice", k=1)[0].id == lisbon.id  # re-embedded

    # the duplicates: one memory, both provenances in its version chain
    pixel = memory.get(seeded["pixel"].id)
    assert pixel.memory == "Maya adopted a greyhound named Pixel."
    added, merged_same, merged_near = memory.history(pixel.id)
    assert added.source == "api" and added.event is VersionEvent.ADD
    assert merged_same.event is merged_near.event is VersionEvent.MERGE
    entries = pixel.metadata["fused_from"]
    assert [(e["owner"], e["id"], e["version"]) for e in entries] == [
        ("user:bob", seeded["same"].id, 1),
        ("user:bob", seeded["near"].id, 1),
    ]
    assert entries[1]["memory"] == "Maya adopted a greyhound called Pixel."

    # the new memory: a copy with provenance, pinned as it was in bob's cube
    cello = report.actions[[a.source.id for a in report.actions].index(seeded["cello"].id)]
    copy = memory.get(cello.target_id or "")
    assert copy.memory == "Tomas plays the cello." and copy.provenance.owner == "user:alice"
    assert copy.provenance.source == "fuse"
    (entry,) = copy.metadata["fused_from"]
    assert (entry["owner"], entry["id"], entry["version"]) == ("user:bob", seeded["cello"].id, 2)
    assert memory.retention(copy.id).pinned
    assert not any(i.memory == "A note bob archived." for i in memory.iter_all(user_id="alice"))


def test_nothing_of_the_source_is_lost(memory: Memory) -> None:
    """Every memory of B is in A (its id and version in a `fused_from` entry) or was
    skipped as archived, and an archived one is still in B."""
    _seed(memory)
    report = memory.fuse_cube("user:bob", "user:alice")
    fused = {
        (e["id"], e["version"])
        for item in memory.get_all(user_id="alice", limit=1000).items
        for e in item.metadata.get("fused_from", [])
    }
    bob = memory.get_all(user_id="bob", include_archived=True, limit=1000).items
    assert len(report.actions) == len(bob)
    for item in bob:
        if item.state is MemoryState.ACTIVE:
            assert (item.id, item.version) in fused, item.memory
        else:
            assert memory.get(item.id).state is MemoryState.ARCHIVED


def test_fusing_again_changes_nothing_and_a_newer_version_fuses_again(memory: Memory) -> None:
    seeded = _seed(memory)
    memory.fuse_cube("user:bob", "user:alice")
    after = _everything(memory, "alice")
    again = memory.fuse_cube("user:bob", "user:alice")
    assert again.as_dict()["counts"] == {"merge": 0, "conflict": 0, "add": 0, "skip": 5}
    assert _everything(memory, "alice") == after
    memory.update(seeded["cello"].id, "Tomas plays the cello and the viola.", user_id="bob")
    third = memory.fuse_cube("user:bob", "user:alice")
    assert third.as_dict()["counts"] == {"merge": 0, "conflict": 1, "add": 0, "skip": 4}
    (changed,) = [a for a in third.actions if a.action == "conflict"]
    assert changed.reason.startswith("v2 fused before into it, other text")
    copy = memory.get(changed.target.id)
    assert copy.memory == "Tomas plays the cello and the viola." and copy.version == 2
    assert len(memory.get_all(user_id="alice").items) == 3  # changed, not duplicated


def test_the_same_conversation_in_two_cubes_fuses_into_one(memory: Memory) -> None:
    """The packaged sample conversation imported for two owners, one of them with a turn
    corrected: every turn merges by its source id, the corrected one is a conflict."""
    from importlib import resources

    from engram.importers import import_file

    sample = Path(str(resources.files("engram") / "data" / "sample_conversation.json"))
    import_file(memory, sample, user_id="a")  # owners "user:<user_id>:<sample id>"
    import_file(memory, sample, user_id="b")
    a, b = "a:maya-tomas", "b:maya-tomas"
    first = memory.get_all(user_id=b, limit=1).items[0]
    memory.update(first.id, "Corrected: " + first.memory, user_id=b)
    count = len(memory.get_all(user_id=a, limit=1000).items)
    report = memory.fuse_cube(f"user:{b}", f"user:{a}")
    assert count > 30 and report.count("conflict") == 1 and report.count("add") == 0
    assert report.count("merge") == count - 1
    assert len(memory.get_all(user_id=a, limit=1000).items) == count


def test_a_failed_fuse_leaves_the_target_unchanged_and_can_run_again(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(memory)
    before = _everything(memory, "alice")
    real = memory.store.change
    calls = []

    def failing(cube: int, key: int, change: Change) -> MemoryItem:
        calls.append(key)
        if len(calls) == 2:  # after the insert and one new version
            raise StoreError("disk went away")
        return real(cube, key, change)

    monkeypatch.setattr(memory.store, "change", failing)
    with pytest.raises(StoreError, match="disk went away"):
        memory.fuse_cube("user:bob", "user:alice")
    monkeypatch.undo()
    assert _everything(memory, "alice") == before
    assert memory.fuse_cube("user:bob", "user:alice").count("add") == 1
    assert len(memory.get_all(user_id="alice").items) == 3


def test_a_target_changed_after_planning_is_refused(memory: Memory) -> None:
    from engram.fuse.apply import apply_plan
    from engram.fuse.plan import Planner

    seeded = _seed(memory)
    ids = (memory.store.cube_id("user:bob"), memory.store.cube_id("user:alice"))
    assert ids[0] is not None and ids[1] is not None
    plan = Planner(memory.store, (ids[0], ids[1]), ("user:bob", "user:alice"), 0.95, None, 5, 0)
    planned = plan.run()
    memory.update(seeded["pixel"].id, "Maya adopted a whippet named Pixel.", user_id="alice")
    before = _everything(memory, "alice")
    with pytest.raises(StoreError, match="changed during the fuse"):
        apply_plan(memory.store, memory.embedder, ids[1], planned)
    assert _everything(memory, "alice") == before


@pytest.mark.parametrize(
    ("source", "into", "threshold", "error", "match"),
    [
        ("user:bob", "user:bob", None, ValidationError, "into itself"),
        ("bob", "user:alice", None, ValidationError, "source must name an owner"),
        ("user:bob", "team:x", None, ValidationError, "into must name an owner"),
        ("user:", "user:alice", None, ValidationError, "source must be"),
        ("user:bob", "user:alice", 1.5, ValidationError, "threshold"),
        ("user:bob", "user:alice", True, ValidationError, "threshold"),
        ("user:nobody", "user:alice", None, NotFoundError, "no memories for user:nobody"),
        ("user:bob", "agent:nobody", None, NotFoundError, "no memories for agent:nobody"),
    ],
)
def test_bad_fuse_requests_are_refused_precisely(
    memory: Memory, source: str, into: str, threshold: Any, error: type, match: str
) -> None:
    _seed(memory)
    before = _everything(memory, "alice")
    with pytest.raises(error, match=match):
        memory.fuse_cube(source, into, threshold=threshold)
    assert _everything(memory, "alice") == before


def test_the_cli_fuses_with_a_dry_run_first(tmp_path: Path, embedder: Embedder) -> None:
    home = tmp_path / "home"
    with Memory(home=home, embedder=embedder) as m:
        seeded = _seed(m)

    def cli(*args: str) -> Any:
        return runner.invoke(app, ["--home", str(home), *args])

    dry = cli("--json", "cube", "fuse", "user:bob", "user:alice", "--dry-run")
    assert dry.exit_code == 0, dry.output
    body = json.loads(dry.output)
    assert body["dry_run"] and body["counts"] == {"merge": 2, "conflict": 1, "add": 1, "skip": 1}
    pair = {a["source_id"]: a["target_id"] for a in body["actions"]}
    assert pair[seeded["porto"].id] == seeded["lisbon"].id
    done = cli("cube", "fuse", "user:bob", "user:alice")
    assert done.exit_code == 0, done.output
    assert "fused user:bob into user:alice: 2 merge, 1 conflict, 1 add, 1 skip" in done.output
    assert f"conflict {seeded['porto'].id} v1 -> {seeded['lisbon'].id}" in done.output
    bad = cli("cube", "fuse", "user:bob", "user:bob")
    assert bad.exit_code == 2 and "cannot fuse user:bob into itself" in bad.output
    with Memory(home=home, embedder=embedder) as m:
        assert m.get(seeded["lisbon"].id).memory == "Maya lives in Porto."


# -- conflicts the LLM decides ---------------------------------------------------------


@pytest.fixture
def scripted_llm() -> Iterator[tuple[Any, str]]:
    from test_llm import ScriptedLLM

    fake = ScriptedLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _decision(action: str, target: int | None = None, text: str | None = None) -> str:
    return json.dumps({"action": action, "target": target, "text": text, "reason": "scripted"})


def test_with_an_llm_a_contradiction_becomes_a_new_version(
    tmp_path: Path, embedder: Embedder, scripted_llm: tuple[Any, str]
) -> None:
    fake, url = scripted_llm
    llm = {"provider": "openai", "model": "scripted", "base_url": url, "max_retries": 0}
    with Memory(home=tmp_path, embedder=embedder, llm=llm, extract={"extractors": []}) as m:
        berlin = m.add("Maya lives in Berlin.", user_id="alice", memory_type="fact")[0]
        m.add("Maya moved to Lisbon last month.", user_id="bob", memory_type="fact")
        m.add("Maya resides in Berlin.", user_id="bob", memory_type="fact")
        fake.say(_decision("UPDATE", 1, "Maya lives in Lisbon."), _decision("NONE"))
        report = m.fuse_cube("user:bob", "user:alice")
        assert [a.action for a in report.actions] == ["conflict", "merge"]
        assert "UPDATE by the LLM: scripted" in report.actions[0].reason
        assert len(fake.requests) == 2 and "Maya lives in Berlin." in json.dumps(fake.requests[0])
        old, new, merged = m.history(berlin.id)
        assert (old.memory, new.memory) == ("Maya lives in Berlin.", "Maya lives in Lisbon.")
        assert new.event is VersionEvent.UPDATE and merged.event is VersionEvent.MERGE
        assert len(m.get_all(user_id="alice").items) == 1


def test_the_api_doc_example_runs() -> None:
    """docs/api.md's fuse example, as written (ENGRAM_HOME is a temporary directory)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    section = text[text.index("## Fusing cubes") :]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    printed: list[Any] = []
    exec(compile(code, "docs/api.md", "exec"), {"print": printed.append})  # noqa: S102
    assert printed[-1] == {"merge": 1, "conflict": 0, "add": 1, "skip": 0}
    assert [a for a, _, _ in printed[0]] == ["merge", "add"]


def test_async_memory_fuses_the_same(tmp_path: Path, embedder: Embedder) -> None:
    import asyncio

    from engram import AsyncMemory

    async def run() -> FuseReport:
        am = AsyncMemory(home=tmp_path, embedder=embedder)
        try:
            await am.add("Tomas plays the cello.", user_id="bob")
            await am.add("Maya lives in Lisbon.", user_id="alice")
            return await am.fuse_cube("user:bob", "user:alice")
        finally:
            await am.close()

    report = asyncio.run(run())
    assert [a.action for a in report.actions] == ["add"] and report.actions[0].target_id
