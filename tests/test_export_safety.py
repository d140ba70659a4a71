"""`engram export -o` never writes over the store it reads from, nor over a file without --force."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _engram_helpers import HashEmbedder, db_path, integrity
from engram import Memory
from engram.cli import app
from engram.errors import OutputRefusedError
from engram.exporting import export_file

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A store with two memories, written without loading the real model (export never
    embeds, so the CLI never loads one either)."""
    store = tmp_path / "store"
    with Memory(home=store, embedder=HashEmbedder(64)) as memory:
        memory.add("kept safe", user_id="alice")
        memory.add("also kept", user_id="bob")
    return store


def export(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), "--json", "export", *args])


def assert_store_intact(home: Path) -> None:
    assert integrity(db_path(home)) == "ok"
    listed = runner.invoke(app, ["--home", str(home), "--json", "list", "-u", "alice"])
    assert listed.exit_code == 0, listed.output
    assert [i["memory"] for i in json.loads(listed.stdout)["items"]] == ["kept safe"]


def refused(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "output_refused"
    for word in words:
        assert word in error["message"]
    return error["message"]


@pytest.mark.parametrize("name", ["engram.db", "engram.db-wal", "engram.db-shm", "notes.jsonl"])
def test_export_refuses_the_store_and_anything_under_its_home(home: Path, name: str) -> None:
    db = db_path(home)
    before = db.read_bytes()
    refused(export(home, "-o", str(home / name)), str(home / name))
    assert db.read_bytes() == before
    assert not (home / "notes.jsonl").exists()
    assert_store_intact(home)


def test_the_reported_command_with_engram_home_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's reproduction: `engram export -o "$ENGRAM_HOME/engram.db"`."""
    monkeypatch.setenv("ENGRAM_HOME", str(home))
    result = runner.invoke(
        app, ["--json", "export", "-o", f"{os.environ['ENGRAM_HOME']}/engram.db"]
    )
    refused(result, "store")
    assert_store_intact(home)
    assert runner.invoke(app, ["--json", "stats"]).exit_code == 0


def test_a_symlink_into_the_home_and_a_hard_link_to_the_store_are_refused(
    home: Path, tmp_path: Path
) -> None:
    link = tmp_path / "backup.jsonl"
    link.symlink_to(db_path(home))
    refused(export(home, "-o", str(link), "--force"))
    hard = tmp_path / "hard.db"
    os.link(db_path(home), hard)
    refused(export(home, "-o", str(hard), "--force"), "store")
    via_dir = tmp_path / "home-link"
    via_dir.symlink_to(home, target_is_directory=True)
    refused(export(home, "-o", str(via_dir / "engram.db"), "--force"))
    assert link.is_symlink()
    assert_store_intact(home)


def test_an_existing_file_is_replaced_only_with_force(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.jsonl"
    out.write_text("previous backup\n")
    refused(export(home, "-o", str(out)), "--force")
    assert out.read_text() == "previous backup\n"
    result = export(home, "-o", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["memory"] for line in out.read_text().splitlines()] == [
        "kept safe",
        "also kept",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl", "store"]  # no temp


def test_a_new_file_needs_no_force_and_a_directory_is_refused(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "new.jsonl"
    assert export(home, "-u", "bob", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text())["memory"] == "also kept"
    refused(export(home, "-o", str(tmp_path), "--force"), "directory")


def test_a_symlink_elsewhere_has_its_target_written_not_replaced(
    home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere" / "backup.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    refused(export(home, "-o", str(link)), "--force")
    assert export(home, "-u", "alice", "-o", str(link), "--force").exit_code == 0
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert json.loads(target.read_text())["memory"] == "kept safe"


def test_the_library_refuses_too(home: Path, tmp_path: Path) -> None:
    with Memory(home=home, embedder=HashEmbedder(64)) as memory:
        with pytest.raises(OutputRefusedError, match="store"):
            export_file(memory, db_path(home), [{"user_id": "alice"}], force=True)
        assert export_file(memory, tmp_path / "a.jsonl", [{"user_id": "alice"}]) == 1
    assert_store_intact(home)
