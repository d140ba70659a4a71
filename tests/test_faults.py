"""Faults: a full disk during add, import, export, KV build and adapter save; corrupted KV
blocks and adapters; a store locked by another process. Each is a clear error naming the
path, never a traceback or a hang, and leaves everything stored before readable.

The full disk is real: a small tmpfs mounted for the test (needs root; skipped otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from _engram_helpers import HashEmbedder, db_path, fill, integrity
from engram import Memory
from engram.activation.block import KVBlock
from engram.activation.errors import KVCorruptError
from engram.activation.layers import DenseLayer
from engram.activation.store import KVStore
from engram.cli import app
from engram.errors import DiskFullError, StoreLockedError

runner = CliRunner()
LONG = " ".join(f"word{i}" for i in range(3500))  # ~30 KB, twice over in the store


def cli(home: Path, *args: str):
    result = runner.invoke(app, ["--home", str(home), "--json", *args])
    assert not isinstance(result.exception, BaseException) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result


def assert_disk_full(result, path: Path) -> None:
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "disk_full"
    assert "no space left" in error["message"] and str(path) in error["message"]
    assert "Traceback" not in result.output


def memories(home: Path, user: str = "alice") -> list[str]:
    page = json.loads(cli(home, "list", "-u", user, "--limit", "1000").stdout)
    return [item["memory"] for item in page["items"]]


# -- a full disk ---------------------------------------------------------------------------------


def test_add_on_a_full_disk(disk: Path) -> None:
    home = disk / "home"
    assert cli(home, "add", "before the disk filled", "-u", "alice").exit_code == 0
    filler = fill(disk)
    assert_disk_full(cli(home, "add", LONG, "-u", "alice"), db_path(home))
    filler.unlink()
    assert integrity(db_path(home)) == "ok"
    assert memories(home) == ["before the disk filled"]
    assert cli(home, "add", "after", "-u", "alice").exit_code == 0


def test_import_on_a_full_disk_loses_nothing_and_resumes(disk: Path, tmp_path: Path) -> None:
    home = disk / "home"
    assert cli(home, "add", "before the disk filled", "-u", "alice").exit_code == 0
    lines = tmp_path / "chats.jsonl"
    with lines.open("w") as fh:
        for i in range(60):
            text = f"line {i} " + " ".join(f"w{i}x{j}" for j in range(300))
            fh.write(json.dumps({"content": text, "user_id": "alice", "source_id": f"l{i}"}))
            fh.write("\n")
    filler = fill(disk)
    assert_disk_full(cli(home, "import", str(lines)), db_path(home))
    filler.unlink()
    assert integrity(db_path(home)) == "ok"
    assert "before the disk filled" in memories(home)
    resumed = cli(home, "import", str(lines))
    assert resumed.exit_code == 0, resumed.output
    stored = memories(home)
    assert len(stored) == 61 and len(set(stored)) == 61  # each line once, none lost


def test_export_to_a_full_disk_keeps_the_old_file(disk: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Memory(home=home, embedder=HashEmbedder(64)) as memory:
        memory.add([LONG[:30000], LONG[-30000:]], user_id="alice")
    out = disk / "backup.jsonl"
    out.write_text("previous backup\n")
    fill(disk, leave=0)
    assert_disk_full(cli(home, "export", "-o", str(out), "--force"), out)
    assert out.read_text() == "previous backup\n"
    assert sorted(p.name for p in disk.iterdir()) == ["backup.jsonl", "filler"]  # no temp
    assert integrity(db_path(home)) == "ok"


def test_kv_build_on_a_full_disk_keeps_stored_blocks(disk: Path) -> None:
    home = disk / "home"
    [first] = json.loads(cli(home, "add", "a short memory", "-u", "alice").stdout)
    assert cli(home, "kv", "build", "-u", "alice", "--id", first["id"]).exit_code == 0
    assert cli(home, "add", LONG[:8000], "-u", "alice").exit_code == 0
    filler = fill(disk)
    result = cli(home, "kv", "build", "-u", "alice", "--recent", "2")
    assert result.exit_code == 1, result.output
    assert "no space left" in result.output and str(home / "kv") in result.output
    filler.unlink()
    kv = KVStore(home / "kv")
    [entry] = kv.entries()  # the earlier block, intact; no staging directory left behind
    assert kv.get(entry.key).n_tokens == entry.n_tokens
    assert [p.name for p in (home / "kv").iterdir()] == [entry.key]


def _adapter(owner: str, size: int) -> tuple[object, object, dict[str, torch.Tensor]]:
    from peft import LoraConfig

    from engram.parametric.registry import AdapterManifest

    manifest = AdapterManifest(owner, 0, "lora", "base", "fp", ["m1"])
    state = {"lora_A.weight": torch.randn(size, 16)}
    return manifest, LoraConfig(r=4, target_modules=["q_proj"]), state


def test_adapter_save_on_a_full_disk_keeps_earlier_versions(disk: Path) -> None:
    from engram.parametric.registry import AdapterRegistry

    registry = AdapterRegistry(disk / "adapters")
    v1 = registry.save(*_adapter("alice", 16))  # type: ignore[arg-type]
    filler = fill(disk)
    with pytest.raises(DiskFullError, match="no space left") as caught:
        registry.save(*_adapter("alice", 4096))  # type: ignore[arg-type]
    assert str(disk / "adapters") in str(caught.value)
    filler.unlink()
    assert v1.path is not None
    assert [m.version for m in registry.versions("alice")] == [1]
    assert AdapterRegistry.verify(registry.get("alice")) == v1.path / "adapter_model.safetensors"
    assert [p.name for p in (disk / "adapters" / "alice").iterdir()] == ["v1"]  # no temp


# -- corrupted artifacts ---------------------------------------------------------------------------


def _block() -> KVBlock:
    layer = DenseLayer(torch.randn(1, 2, 8, 4), torch.randn(1, 2, 8, 4), torch.arange(8))
    return KVBlock([layer], list(range(8)), "fingerprint", None, "float32")


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_corrupted_kv_block_is_refused_with_its_path(tmp_path: Path) -> None:
    key = KVStore(tmp_path / "kv").put(_block())
    data = tmp_path / "kv" / key / "kv.safetensors"
    _flip(data)
    with pytest.raises(KVCorruptError, match="checksum") as caught:
        KVStore(tmp_path / "kv").get(key)  # a fresh store: nothing cached in RAM
    assert str(data) in str(caught.value)


def test_a_corrupted_adapter_is_refused_with_its_path(tmp_path: Path) -> None:
    from engram.parametric.registry import AdapterCorruptError, AdapterRegistry

    registry = AdapterRegistry(tmp_path / "adapters")
    saved = registry.save(*_adapter("alice", 16))  # type: ignore[arg-type]
    assert saved.path is not None and saved.config_sha256
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        path = saved.path / name
        original = path.read_bytes()
        _flip(path)
        with pytest.raises(AdapterCorruptError, match="corrupt") as caught:
            AdapterRegistry.verify(registry.get("alice"))
        assert str(path) in str(caught.value)
        path.write_bytes(original)
    AdapterRegistry.verify(registry.get("alice"))


# -- a store locked by another process -------------------------------------------------------------

LOCKER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # hold the lock until told to let go
conn.execute("ROLLBACK")
"""


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A store whose write lock another process holds, until the test ends."""
    home = tmp_path / "home"
    with Memory(home=home, embedder=HashEmbedder(64)) as memory:
        memory.add("written before the lock", user_id="alice")
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db_path(home))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield home
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)


def test_a_locked_store_is_a_clear_error_after_the_busy_timeout(locked: Path) -> None:
    memory = Memory(home=locked, embedder=HashEmbedder(64), sqlite={"busy_timeout_s": 0.3})
    try:
        start = time.monotonic()
        with pytest.raises(StoreLockedError, match="locked by another process") as caught:
            memory.add("blocked", user_id="alice")
        assert time.monotonic() - start < 20  # bounded: waited the timeout, then gave up
        assert str(db_path(locked)) in str(caught.value) and "0.3 s" in str(caught.value)
        assert [i.memory for i in memory.iter_all(user_id="alice")] == [
            "written before the lock"
        ]  # readers are not blocked (WAL)
    finally:
        memory.close()


def test_the_cli_on_a_locked_store_exits_1_with_the_path(
    locked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_SQLITE__BUSY_TIMEOUT_S", "0.3")
    page = json.loads(cli(locked, "list", "-u", "alice").stdout)  # reading is not blocked
    [item] = page["items"]
    result = cli(locked, "delete", item["id"])
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "store_locked" and str(db_path(locked)) in error["message"]
