"""The tiers of a MemCube behind one interface; Python verbs for KV blocks and LoRA
adapters; erasure that reaches every tier and leaves no byte of the memory on disk.

Models: the packaged Engram LM (`engram.lm.load_model()`), as `kv.model` and
`lora.base_model` default to it."""

from __future__ import annotations

import asyncio
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from engram import AsyncMemory, Memory
from engram.embed import Embedder
from engram.exporting import export_file
from engram.scope import Scope
from engram.tiers import ACTIVATION, PARAMETRIC, TEXT, Tier

SECRET = "Zephyrine Quokkabottom hides the vault code 7731 under the cobalt frog."
OTHERS = ["Ada Quill lives in Borovale.", "Bo Lindqvist plays the cello on Sundays."]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.fixture
def mem(tmp_path: Path, embedder: Embedder) -> Any:
    m = Memory(home=tmp_path / "home", embedder=embedder, lora={"epochs": 1, "safeguards": []})
    try:
        yield m
    finally:
        m.close()


def _add(m: Memory, *texts: str) -> list[str]:
    return [m.add(text, user_id="alice")[0].id for text in texts]


def test_each_cube_has_three_tiers_behind_one_interface(mem: Memory) -> None:
    _add(mem, *OTHERS)
    cube = mem.cube(Scope.of(user_id="alice"))
    assert cube is not None
    assert list(cube.tiers) == [TEXT, ACTIVATION, PARAMETRIC]
    for tier in cube.tiers.values():
        assert isinstance(tier, Tier) and tier.owner == "user:alice"
        assert isinstance(tier.stats(), dict)
    assert len(cube.tiers[TEXT].held()) == 2
    assert cube.tiers[ACTIVATION].held() == [] and cube.tiers[PARAMETRIC].held() == []


def test_tiers_says_which_artifacts_hold_a_memory(mem: Memory) -> None:
    ada, bo = _add(mem, *OTHERS)
    block = mem.kv.build(user_id="alice", ids=[ada])
    adapter = mem.lora.train(user_id="alice")
    assert block.meta["memory_ids"] == [ada] and set(adapter.memory_ids) == {ada, bo}
    assert [e.key for e in mem.kv.ls(user_id="alice")] == [block.key]
    assert [m.version for m in mem.lora.ls(user_id="alice")] == [1]
    held = {(h.tier, h.key, h.current) for h in mem.tiers(ada, user_id="alice")}
    assert held == {(TEXT, ada, True), (ACTIVATION, block.key, True), (PARAMETRIC, "v1", True)}
    assert {h.tier for h in mem.tiers(bo, user_id="alice")} == {TEXT, PARAMETRIC}
    mem.update(ada, "Ada Quill lives in Port Elsa.", user_id="alice")
    stale = {h.tier: h.current for h in mem.tiers(ada, user_id="alice")}
    assert stale == {TEXT: True, ACTIVATION: False, PARAMETRIC: False}
    answer = mem.lora.ask("Ada Quill lives in", user_id="alice", max_tokens=3)
    assert answer.version == 1 and isinstance(answer.with_adapter, str)
    mem.kv.rm(block.key)
    assert {h.tier for h in mem.tiers(ada, user_id="alice")} == {TEXT, PARAMETRIC}


def _token_ids(mem: Memory) -> list[int]:
    """The secret's token ids as the packaged LM tokenizes it, without the sequence edges
    (a neighbouring line can merge with them inside a block)."""
    from engram.lm import load_model

    _, tokenizer = load_model(None)
    ids = tokenizer(SECRET, add_special_tokens=False)["input_ids"]
    return list(ids[1:-1])


def _needles(token_ids: list[int]) -> dict[str, re.Pattern[bytes]]:
    n = len(token_ids)
    exact = {
        "utf-8 text": SECRET.encode(),
        "distinctive word": b"Quokkabottom",
        "fts token": b"quokkabottom",
        "updated text": b"Zephyrine moved the vault code",
        "token ids int64": struct.pack(f"<{n}q", *token_ids),
        "token ids int32": struct.pack(f"<{n}i", *token_ids),
    }
    needles = {name: re.compile(re.escape(needle)) for name, needle in exact.items()}
    # as JSON (manifest.json), whatever the indentation: 12,\n  345,\n  67 ...
    json_ids = rb",\s*".join(str(t).encode() for t in token_ids)
    needles["token ids json"] = re.compile(rb"(?<![0-9])" + json_ids + rb"(?![0-9])")
    return needles


def _scan(home: Path, needles: dict[str, re.Pattern[bytes]]) -> dict[str, list[str]]:
    """Which needles occur in which files under `home` (every byte of every file)."""
    found: dict[str, list[str]] = {}
    for path in sorted(home.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            for name, needle in needles.items():
                if needle.search(data):
                    found.setdefault(name, []).append(str(path.relative_to(home)))
    return found


@pytest.mark.parametrize("how", ["delete", "delete_all"])
def test_erasure_leaves_no_byte_of_the_memory_in_any_tier(
    mem: Memory, tmp_path: Path, how: str
) -> None:
    ada, bo = _add(mem, *OTHERS)
    kept_block = mem.kv.build(user_id="alice", ids=[ada])
    kept_adapter = mem.lora.train(user_id="alice")  # v1: never saw the secret
    (secret,) = _add(mem, SECRET)
    mem.update(secret, SECRET.replace("hides", "moved the vault code;"), user_id="alice")
    mem.update(secret, SECRET, user_id="alice")  # the versions hold both texts
    mem.search("where is the vault code", user_id="alice")
    block = mem.kv.build(user_id="alice", ids=[ada, secret, bo])
    adapter = mem.lora.train(user_id="alice")  # v2 continues v1 and learns the secret
    assert secret in block.meta["memory_ids"] and secret in adapter.memory_ids
    assert {h.tier for h in mem.tiers(secret, user_id="alice")} == {TEXT, ACTIVATION, PARAMETRIC}
    needles = _needles(_token_ids(mem))
    before = _scan(mem.home, needles)
    assert {"utf-8 text", "token ids json"} <= set(before), before  # the scan sees them

    if how == "delete":
        mem.delete(secret, hard=True, user_id="alice")
        assert [m.version for m in mem.lora.ls(user_id="alice")] == [kept_adapter.version]
        assert [e.key for e in mem.kv.ls(user_id="alice")] == [kept_block.key]
        assert {h.tier for h in mem.tiers(ada, user_id="alice")} == {
            TEXT,
            ACTIVATION,
            PARAMETRIC,
        }
    else:
        assert mem.delete_all(user_id="alice", hard=True) == 3
        assert mem.lora.ls(user_id="alice") == [] and mem.kv.ls(user_id="alice") == []
        assert mem.owners() == []
    assert mem.store.artifacts(memory_ids=[secret]) == []

    assert _scan(mem.home, needles) == {}
    out = tmp_path / "export.jsonl"
    export_file(mem, out, [{"user_id": "alice"}], include_archived=True)
    exported = out.read_bytes()
    assert not any(needle.search(exported) for needle in needles.values())
    if how == "delete":
        assert b"Borovale" in exported


def test_a_later_train_continues_from_a_version_that_never_saw_the_memory(mem: Memory) -> None:
    _add(mem, *OTHERS)
    mem.lora.train(user_id="alice")
    (secret,) = _add(mem, SECRET)
    mem.lora.train(user_id="alice")
    mem.delete(secret, hard=True, user_id="alice")
    _add(mem, "Cy Moreau collects brass compasses.")
    again = mem.lora.train(user_id="alice")
    assert again.parents == [1] and secret not in again.memory_ids


def test_async_memory_has_the_tier_verbs(mem: Memory) -> None:
    (ada,) = _add(mem, OTHERS[0])

    async def run() -> tuple[Any, Any, Any]:
        am = AsyncMemory(memory=mem)
        block = await am.kv.build(user_id="alice", recent=1)
        return block, await am.kv.ls(user_id="alice"), await am.tiers(ada, user_id="alice")

    block, listed, held = asyncio.run(run())
    assert [e.key for e in listed] == [block.key]
    assert {h.tier for h in held} == {TEXT, ACTIVATION}


def _section(text: str, title: str) -> str:
    start = text.index(title)
    following = re.search(r"^## ", text[start + len(title) :], flags=re.M)
    return text[start : start + len(title) + (following.start() if following else len(text))]


def test_api_docs_tier_examples_run() -> None:
    """Every Python block of docs/api.md's tier section runs, in order, against the
    temporary ENGRAM_HOME the suite sets, with the packaged Engram LM."""
    section = _section(DOCS.read_text(), "## Tiers: text, KV blocks, LoRA adapters")
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, Any] = {}
    for code in blocks:
        exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - the docs' own code
    json.dumps(namespace.get("report", {}), default=str)


def test_a_build_racing_an_erasure_leaves_no_artifact(mem: Memory) -> None:
    from engram.errors import NotFoundError
    from engram.lm import load_model

    ada, secret = _add(mem, OTHERS[0], SECRET)
    items = [mem.get(ada), mem.get(secret)]  # read before the erasure, built after it
    mem.delete(secret, hard=True, user_id="alice")
    cube = mem.cube(Scope.of(user_id="alice"))
    assert cube is not None
    model, tokenizer = load_model(None)
    with pytest.raises(NotFoundError, match="erased while"):
        cube.tiers[ACTIVATION].build(items, model=model, tokenizer=tokenizer)
    assert mem.kv.ls() == [] and mem.store.artifacts() == []
