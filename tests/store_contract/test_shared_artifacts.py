"""Shared artifacts: two Engram processes' worth of Memory objects on one PostgreSQL database,
each with its own home but one `artifacts_dir`, see each other's KV blocks and adapters;
erasure through one removes what the other built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _pg import fresh_database

from engram import Memory
from engram.bundle.errors import BundleConflictError
from engram.config import load_config
from engram.embed import Embedder
from engram.errors import ConfigError, ValidationError
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


def test_migrate_moves_blocks_and_adapters_into_the_new_artifacts_dir(
    tmp_path: Path, pg_server: Any, embedder: Embedder
) -> None:
    """`engram migrate --artifacts-to`: a SQLite home's KV blocks and adapters land in the
    directory the PostgreSQL servers share, and load there; a repeat copies nothing, a
    file held with other content stops it, a block gone from the source is named."""
    import json

    from typer.testing import CliRunner

    from engram.cli import app
    from engram.store.migrate import migrate

    pg_url = fresh_database(pg_server)
    home, shared = tmp_path / "home", tmp_path / "shared"
    local = Memory(home=home, embedder=embedder, lora={"epochs": 1, "safeguards": []})
    try:
        local.add("Maya adopted a greyhound named Pixel.", user_id="maya")
        local.add("Maya lives in Lisbon.", user_id="maya")
        block = local.kv.build(user_id="maya", recent=2)
        adapter = local.lora.train(user_id="maya")
        ghost = local.add("Tomas plays chess.", user_id="tomas")[0]
        local.store.record_artifact(ACTIVATION, "user:tomas", "gone-block", [(ghost.id, 1)])
    finally:
        local.close()
    src = f"sqlite:///{home}/engram.db"
    args = ["--json", "migrate", "--from", src, "--to", pg_url, "--artifacts-to", str(shared)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout.splitlines()[-1])["artifacts"]
    assert (report["copied"], report["skipped"]) == (2, 0)
    assert report["missing"] == ["activation:user:tomas:gone-block"]
    node = _node(tmp_path, "node", pg_url, shared, embedder)
    try:
        assert [e.key for e in node.kv.ls(user_id="maya")] == [block.key]
        assert node.kv.get(block.key).n_tokens == block.n_tokens  # checksums verified
        assert [v.version for v in node.lora.ls(user_id="maya")] == [adapter.version]
    finally:
        node.close()
    again = migrate(src, pg_url, artifacts=(home, shared))
    assert again.artifacts is not None and len(again.artifacts.skipped) == 2
    assert again.artifacts.copied == []
    other = tmp_path / "other"
    (other / "kv" / block.key).mkdir(parents=True)
    (other / "kv" / block.key / "manifest.json").write_text("{}")
    with pytest.raises(BundleConflictError, match="other content"):
        migrate(src, fresh_database(pg_server), artifacts=(home, other))
    assert not (other / "lora").exists()  # nothing of that owner's files was written
    with pytest.raises(ValidationError, match="source's artifacts directory"):
        migrate(src, pg_url, artifacts=(home, home))
