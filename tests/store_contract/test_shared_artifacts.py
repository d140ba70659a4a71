"""Shared artifacts: two Engram processes' worth of Memory objects on one PostgreSQL database,
each with its own home but one `artifacts_dir`, see each other's KV blocks and adapters;
erasure through one removes what the other built."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram import Memory
from engram.config import load_config
from engram.embed import Embedder
from engram.errors import ConfigError
from engram.tiers import ACTIVATION, PARAMETRIC


def _node(tmp: Path, name: str, url: str, shared: Path, embedder: Embedder) -> Memory:
    return Memory(
        home=tmp / name,
        database_url=url,
        artifacts_dir=shared,
        embedder=embedder,
        lora={"epochs": 1, "safeguards": []},
    )


def test_blocks_and_adapters_built_on_one_node_serve_and_erase_on_another(
    tmp_path: Path, pg_url: str, embedder: Embedder
) -> None:
    shared = tmp_path / "shared"
    a = _node(tmp_path, "a", pg_url, shared, embedder)
    b = _node(tmp_path, "b", pg_url, shared, embedder)
    try:
        pixel = a.add("Maya adopted a greyhound named Pixel.", user_id="maya")[0]
        a.add("Maya lives in Lisbon.", user_id="maya")
        block = a.kv.build(user_id="maya", recent=2)
        adapter = a.lora.train(user_id="maya")
        # node b sees both: the provenance in the database, the files in the shared dir
        assert [e.key for e in b.kv.ls(user_id="maya")] == [block.key]
        assert b.kv.get(block.key).n_tokens == block.n_tokens
        assert [v.version for v in b.lora.ls(user_id="maya")] == [adapter.version]
        held = {h.tier for h in b.tiers(pixel.id, user_id="maya")}
        assert held == {"text", ACTIVATION, PARAMETRIC}
        assert not (tmp_path / "a" / "kv").exists() and not (tmp_path / "b" / "lora").exists()
        # erasure through b reaches what a built
        b.delete(pixel.id, hard=True, user_id="maya")
        assert a.kv.ls(user_id="maya") == [] and not (shared / "kv" / block.key).exists()
        assert all(pixel.id not in v.memory_ids for v in a.lora.ls(user_id="maya"))
    finally:
        a.close()
        b.close()


def test_artifacts_dir_defaults_to_the_home_and_expands_the_user(tmp_path: Path) -> None:
    assert load_config(home=tmp_path).artifacts == tmp_path
    config = load_config(home=tmp_path, artifacts_dir="~/engram-shared")
    assert config.artifacts == Path("~/engram-shared").expanduser()
    with pytest.raises(ConfigError, match="artifacts_dir"):
        load_config(home=tmp_path, artifacts_dir=["not", "a", "path"])
