"""SQLiteStore over a memory's life: keys never reused, erasure, connections, transactions."""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from _engram_helpers import HashEmbedder, integrity, new_row
from engram import Memory, NotFoundError, StoreError
from engram.errors import CubeGoneError
from engram.scope import Scope
from engram.store.base import MemoryFilter
from engram.store.migrations import MIGRATIONS
from engram.store.sqlite import SQLiteStore
from engram.store.vector_index import encode_vector

DIM = 8


row = new_row


def vecs(n: int) -> np.ndarray:
    return np.eye(DIM, dtype=np.float32)[:n]


def key_of(store: SQLiteStore, memory_id: str) -> int:
    found = store.locate(memory_id)
    assert found is not None
    return found.key


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "engram.db", DIM)
    yield s
    s.close()


# -- keys and cube ids are never reused ------------------------------------------------------------


def test_a_purged_key_is_never_given_to_a_new_memory(store: SQLiteStore) -> None:
    cube = store.cube_id("user:u", create=True)
    _, last = store.insert(cube, [row("a"), row("b")], vecs(2))
    purged = key_of(store, last.id)
    store.purge(cube, [purged])
    [new] = store.insert(cube, [row("c")], vecs(1))
    assert key_of(store, new.id) > purged


def test_an_erased_cube_id_is_never_given_to_another_owner(store: SQLiteStore) -> None:
    alice = store.cube_id("user:alice", create=True)
    [item] = store.insert(alice, [row("a")], vecs(1))
    store.purge(alice, [key_of(store, item.id)])
    assert store.owners() == []
    bob = store.cube_id("user:bob", create=True)
    assert bob > alice
    with pytest.raises(CubeGoneError):
        store.insert(alice, [row("into a stale cube")], vecs(1))


def test_record_access_only_touches_rows_of_the_given_cube(store: SQLiteStore) -> None:
    from datetime import UTC, datetime

    alice = store.cube_id("user:alice", create=True)
    bob = store.cube_id("user:bob", create=True)
    [a] = store.insert(alice, [row("a")], vecs(1))
    [b] = store.insert(bob, [row("b")], vecs(1))
    store.record_access(alice, {key_of(store, b.id): 5, key_of(store, a.id): 1}, datetime.now(UTC))
    assert store.by_keys(bob, [key_of(store, b.id)])[key_of(store, b.id)].access_count == 0
    assert store.by_keys(alice, [key_of(store, a.id)])[key_of(store, a.id)].access_count == 1


def test_migration_keeps_a_0001_store_and_stops_key_reuse(tmp_path: Path) -> None:
    path = tmp_path / "engram.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    name, script = MIGRATIONS[0]
    for statement in (s for s in script.split(";") if s.strip()):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'then')", (name,))
    conn.execute("INSERT INTO cubes (id, owner, created_at, rev) VALUES (3, 'user:u', 't', 7)")
    for key, text in [(1, "kept one"), (2, "kept two")]:
        conn.execute(
            "INSERT INTO memories (key, id, cube_id, type, text, source, created_at, "
            "updated_at, embedding) VALUES (?, ?, 3, 'note', ?, 'test', "
            "'2024-01-01T00:00:00.000000', '2024-01-01T00:00:00.000000', ?)",
            (key, f"id-{key}", text, encode_vector(np.eye(DIM, dtype=np.float32)[key])),
        )
        conn.execute(
            "INSERT INTO versions (memory_key, version, event, text, at) "
            "VALUES (?, 1, 'add', ?, '2024-01-01T00:00:00.000000')",
            (key, text),
        )
        conn.execute(
            "INSERT INTO memories_fts (rowid, body, cube) VALUES (?, ?, 'c3')", (key, text)
        )
    conn.commit()
    conn.close()

    store = SQLiteStore(path, DIM)
    try:
        assert store.cube_id("user:u") == 3
        items = store.by_keys(3, [1, 2])
        assert [items[k].memory for k in (1, 2)] == ["kept one", "kept two"]
        assert [v.memory for v in store.history(3, 2)] == ["kept two"]
        assert [s.key for s in store.lexical(3, ["two"], 5, MemoryFilter())] == [2]
        store.purge(3, [2])
        [new] = store.insert(3, [row("after migration")], vecs(1))
        assert key_of(store, new.id) == 3
        assert store.integrity_check() == "ok"
    finally:
        store.close()
    schema = sqlite3.connect(path).execute(
        "SELECT sql FROM sqlite_master WHERE name IN ('memories', 'cubes')"
    )
    assert all("AUTOINCREMENT" in sql for (sql,) in schema)
    assert integrity(path) == "ok"


# -- erasure ---------------------------------------------------------------------------------------


def test_erasure_under_an_open_reader_commits_and_warns(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    cube = store.cube_id("user:u", create=True)
    gone, kept = store.insert(cube, [row("secret"), row("kept")], vecs(2))
    reader = sqlite3.connect(store.path)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM memories").fetchone()  # holds an older snapshot
    try:
        with caplog.at_level(logging.WARNING, logger="engram.store.sqlite"):
            assert store.purge(cube, [key_of(store, gone.id)]) == 1
    finally:
        reader.close()
    assert "write-ahead log" in caplog.text
    assert store.locate(gone.id) is None and store.locate(kept.id) is not None


# -- transactions ----------------------------------------------------------------------------------


def test_a_write_sqlite_rolled_back_itself_reports_the_original_error(store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="no such table"), store._write() as conn:
        conn.execute("ROLLBACK")  # as SQLite does on its own after e.g. SQLITE_FULL
        conn.execute("SELECT * FROM no_such_table")
    cube = store.cube_id("user:u", create=True)
    assert len(store.insert(cube, [row("still works")], vecs(1))) == 1


def test_insert_reads_its_rows_back_before_a_concurrent_purge(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = SQLiteStore(store.path, DIM)
    cube = store.cube_id("user:u", create=True)
    store.insert(cube, [row("first")], vecs(1))
    append = store._snapshots.append

    def purge_right_after_commit(cube_: int, old: int, new: int, rows: list) -> None:
        other.purge(cube_, [r.key for r in rows])
        append(cube_, old, new, rows)

    monkeypatch.setattr(store._snapshots, "append", purge_right_after_commit)
    try:
        [item] = store.insert(cube, [row("purged at once")], vecs(1))
    finally:
        other.close()
    assert item.memory == "purged at once"


def test_update_of_a_memory_erased_meanwhile_is_not_found(tmp_path: Path) -> None:
    class ErasingEmbedder(HashEmbedder):
        erase = None

        def _embed(self, texts: list[str]) -> np.ndarray:
            if self.erase is not None:
                erase, self.erase = self.erase, None
                erase()
            return super()._embed(texts)

    embedder = ErasingEmbedder()
    with Memory(home=tmp_path, embedder=embedder) as mem:
        [target, _] = mem.add(["old text", "another"], user_id="alice")
        cube = mem.cube(Scope.of("alice"))
        assert cube is not None
        key = key_of(mem.store, target.id)  # type: ignore[arg-type]
        embedder.erase = lambda: mem.store.purge(cube.id, [key])
        with pytest.raises(NotFoundError, match=f"no memory '{target.id}' for user:alice"):
            mem.update(target.id, "new text")


# -- connections -----------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    with Memory(home=tmp_path, embedder=HashEmbedder()) as mem:
        mem.add("the quick brown fox", user_id="alice")
        mem.search("fox", user_id="alice")
        fds = _open_fds()
        errors: list[BaseException] = []

        def search() -> None:
            try:
                mem.search("fox", user_id="alice")
            except BaseException as err:  # noqa: BLE001 - reported by the assertion below
                errors.append(err)

        for _ in range(200):
            thread = threading.Thread(target=search)
            thread.start()
            thread.join()
        gc.collect()
        assert errors == []
        assert mem.store.open_connections <= 2  # type: ignore[attr-defined]
        assert _open_fds() <= fds + 6
