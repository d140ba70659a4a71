"""SQLiteStore on its own: migrations, WAL, embedder identity, vectors, the index cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from _engram_helpers import HashEmbedder, integrity, new_row, table_counts
from engram import EmbedderMismatchError, Memory, SchemaVersionError, StoreError
from engram.store.base import MemoryFilter, NewMemory
from engram.store.migrations import MIGRATIONS
from engram.store.sqlite import SQLiteStore
from engram.store.vector_index import decode_matrix, encode_vector
from engram.types import MemoryState, VersionEvent

DIM = 8


row = new_row


def unit(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "engram.db", DIM)
    yield s
    s.close()


def _key(store: SQLiteStore, memory_id: str) -> int:
    found = store.locate(memory_id)
    assert found is not None
    return found.key


# -- schema ----------------------------------------------------------------------------------------


def test_migrations_are_recorded(store: SQLiteStore) -> None:
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT name, applied_at FROM schema_migrations ORDER BY name").fetchall()
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert [r[0] for r in rows] == [name for name, _ in MIGRATIONS]
    assert all(r[1] for r in rows)
    assert {"meta", "cubes", "memories", "versions", "memories_fts"} <= tables


def test_reopening_keeps_data_and_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "engram.db"
    first = SQLiteStore(path, DIM)
    cube = first.cube_id("user:u", create=True)
    [item] = first.insert(cube, [row("persisted")], unit(0)[None, :])
    first.close()
    for _ in range(2):
        again = SQLiteStore(path, DIM)
        assert again.by_keys(cube, [_key(again, item.id)])[_key(again, item.id)].memory == (
            "persisted"
        )
        again.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_store_from_a_newer_engram_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "engram.db"
    SQLiteStore(path, DIM).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES ('0999_from_the_future', '2099-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="0999_from_the_future") as info:
        SQLiteStore(path, DIM)
    assert "upgrade Engram" in str(info.value)
    assert isinstance(info.value, StoreError)
    # the refused open changed nothing
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    conn.close()
    assert names == {name for name, _ in MIGRATIONS} | {"0999_from_the_future"}


def test_wal_mode_is_on(store: SQLiteStore) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store.integrity_check() == "ok"


def test_store_path_problems_are_store_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create store directory"):
        SQLiteStore(blocker / "sub" / "engram.db", DIM)
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="SQLite store"):
        SQLiteStore(tmp_path / "dir.db", DIM)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        SQLiteStore(garbage, DIM)


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "engram.db", DIM)
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.owners()


# -- embedder identity -----------------------------------------------------------------------------


def test_embedder_mismatch_is_refused_with_a_clear_message(tmp_path: Path, embedder) -> None:
    with Memory(home=tmp_path, embedder=embedder) as mem:
        [item] = mem.add("Stored with MiniLM.", user_id="alice")
    with pytest.raises(EmbedderMismatchError) as info:
        Memory(home=tmp_path, embedder=HashEmbedder(64))
    message = str(info.value)
    for part in ("all-MiniLM-L6-v2", "384-d", "hash-bow-64", "64-d", str(tmp_path / "engram.db")):
        assert part in message, part
    # same dimension, different model: still a different vector space
    with pytest.raises(EmbedderMismatchError, match="'other-384'"):
        Memory(home=tmp_path, embedder=HashEmbedder(384, name="other-384"))
    with Memory(home=tmp_path, embedder=embedder) as mem:
        assert mem.get(item.id).memory == "Stored with MiniLM."


def test_check_embedder_records_on_first_use(store: SQLiteStore) -> None:
    store.check_embedder("model-a", DIM)
    store.check_embedder("model-a", DIM)  # same one again is fine
    with pytest.raises(EmbedderMismatchError, match="'model-a' \\(8-d\\) but 'model-b' \\(8-d\\)"):
        store.check_embedder("model-b", DIM)
    conn = sqlite3.connect(store.path)
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    conn.close()
    assert meta == {"embedder.name": "model-a", "embedder.dim": "8"}


# -- vectors ---------------------------------------------------------------------------------------


def test_wrong_dimension_vectors_are_refused(store: SQLiteStore) -> None:
    cube = store.cube_id("user:u", create=True)
    before = table_counts(store.path)
    with pytest.raises(StoreError, match="dimension 5, store has 8"):
        store.insert(cube, [row("a")], np.ones((1, 5), dtype=np.float32))
    with pytest.raises(StoreError, match="2 rows but 1 vectors"):
        store.insert(cube, [row("a"), row("b")], unit(0)[None, :])
    with pytest.raises(StoreError, match="shape"):
        store.dense(cube, np.ones(5, dtype=np.float32), 3, MemoryFilter())
    with pytest.raises(StoreError, match="shape"):
        store.dense(cube, np.ones((1, DIM), dtype=np.float32), 3, MemoryFilter())
    assert table_counts(store.path) == before


def test_insert_returns_rows_in_order_and_dense_ranks_by_cosine(store: SQLiteStore) -> None:
    cube = store.cube_id("user:u", create=True)
    vecs = np.stack([unit(0), unit(1), (unit(0) + unit(1)) / np.sqrt(2)])
    items = store.insert(cube, [row("x"), row("y"), row("xy")], vecs)
    assert [i.memory for i in items] == ["x", "y", "xy"]
    keys = [_key(store, i.id) for i in items]
    ranked = store.dense(cube, unit(0), 3, MemoryFilter())
    assert [s.key for s in ranked] == [keys[0], keys[2], keys[1]]
    assert ranked[0].score == pytest.approx(1.0, abs=1e-3)
    assert ranked[1].score == pytest.approx(1 / np.sqrt(2), abs=1e-3)
    assert ranked[2].score == pytest.approx(0.0, abs=1e-3)
    assert len(store.dense(cube, unit(0), 1, MemoryFilter())) == 1


def test_float16_round_trip_keeps_cosine(embedder) -> None:
    texts = [
        f"Sentence number {i} about {topic}."
        for i, topic in enumerate(
            ["cats", "finance", "the weather", "quantum physics", "jazz", "tennis"] * 4
        )
    ]
    vectors = embedder.embed(texts)
    decoded = decode_matrix([encode_vector(v) for v in vectors], vectors.shape[1])
    assert decoded.dtype == np.float32 and decoded.shape == vectors.shape
    cos = np.sum(decoded * vectors, axis=1) / np.linalg.norm(decoded, axis=1)
    assert np.all(cos > 1 - 1e-3), cos.min()
    # pairwise similarities barely move
    assert np.max(np.abs(decoded @ decoded.T - vectors @ vectors.T)) < 1e-3


def test_float16_round_trip_through_the_store(tmp_path: Path, embedder) -> None:
    s = SQLiteStore(tmp_path / "engram.db", embedder.dim)
    try:
        cube = s.cube_id("user:u", create=True)
        texts = ["The quick brown fox.", "A slow green turtle.", "Interest rates rose again."]
        vectors = embedder.embed(texts)
        items = s.insert(cube, [row(t) for t in texts], vectors)
        stored = s.vectors(cube, [_key(s, i.id) for i in items])
        assert np.all(np.sum(stored * vectors, axis=1) > 1 - 1e-3)
        assert len(encode_vector(vectors[0])) == embedder.dim * 2  # float16 on disk
    finally:
        s.close()


def test_vector_cache_sees_writes_of_another_store_instance(tmp_path: Path) -> None:
    path = tmp_path / "engram.db"
    a, b = SQLiteStore(path, DIM), SQLiteStore(path, DIM)
    try:
        cube = a.cube_id("user:u", create=True)
        assert b.cube_id("user:u") == cube
        [x] = a.insert(cube, [row("x")], unit(0)[None, :])
        kx = _key(a, x.id)
        assert [s.key for s in a.dense(cube, unit(1), 5, MemoryFilter())] == [kx]  # cache loaded

        [y] = b.insert(cube, [row("y")], unit(1)[None, :])
        ky = _key(b, y.id)
        assert [s.key for s in a.dense(cube, unit(1), 5, MemoryFilter())] == [ky, kx]

        b.set_state(cube, [kx], MemoryState.ARCHIVED, VersionEvent.DELETE, "gone")
        assert [s.key for s in a.dense(cube, unit(0), 5, MemoryFilter())] == [ky]

        b.set_state(cube, [kx], MemoryState.ACTIVE, VersionEvent.RESTORE, None)
        assert [s.key for s in a.dense(cube, unit(0), 5, MemoryFilter())][0] == kx

        b.purge(cube, [ky])
        assert [s.key for s in a.dense(cube, unit(1), 5, MemoryFilter())] == [kx]

        # a write through `a` after b's write must not resurrect a stale matrix
        [z] = b.insert(cube, [row("z")], unit(2)[None, :])
        [w] = a.insert(cube, [row("w")], unit(3)[None, :])
        got = {s.key for s in a.dense(cube, unit(2), 5, MemoryFilter())}
        assert got == {kx, _key(a, z.id), _key(a, w.id)}
        assert {s.key for s in b.dense(cube, unit(2), 5, MemoryFilter())} == got
    finally:
        a.close()
        b.close()


def test_search_sees_writes_of_another_memory_instance(tmp_path: Path, embedder) -> None:
    with (
        Memory(home=tmp_path, embedder=embedder) as one,
        Memory(home=tmp_path, embedder=embedder) as two,
    ):
        one.add("I keep my bicycle in the basement.", user_id="alice")
        assert one.search("bicycle", user_id="alice", pipeline="dense")  # warm one's cache
        [new] = two.add("My piano needs tuning every spring.", user_id="alice")
        hits = one.search("piano tuning", user_id="alice", pipeline="dense")
        assert hits[0].id == new.id
        two.delete(new.id, user_id="alice")
        assert new.id not in {
            h.id for h in one.search("piano tuning", user_id="alice", pipeline="dense")
        }


def test_archived_filter_scores_archived_rows(store: SQLiteStore) -> None:
    cube = store.cube_id("user:u", create=True)
    items = store.insert(cube, [row("a"), row("b")], np.stack([unit(0), unit(1)]))
    ka, kb = (_key(store, i.id) for i in items)
    store.set_state(cube, [ka], MemoryState.ARCHIVED, VersionEvent.DELETE, None)
    both = MemoryFilter(states=(MemoryState.ACTIVE, MemoryState.ARCHIVED))
    assert [s.key for s in store.dense(cube, unit(0), 5, both)] == [ka, kb]
    assert [s.key for s in store.dense(cube, unit(0), 5, MemoryFilter())] == [kb]


def test_set_state_is_idempotent_and_counts_changes(store: SQLiteStore) -> None:
    cube = store.cube_id("user:u", create=True)
    items = store.insert(cube, [row("a"), row("b")], np.stack([unit(0), unit(1)]))
    keys = [_key(store, i.id) for i in items]
    assert store.set_state(cube, keys, MemoryState.ARCHIVED, VersionEvent.DELETE, None) == 2
    assert store.set_state(cube, keys, MemoryState.ARCHIVED, VersionEvent.DELETE, None) == 0
    assert len(store.history(cube, keys[0])) == 2
    other = store.cube_id("user:v", create=True)
    assert store.set_state(other, keys, MemoryState.ACTIVE, VersionEvent.RESTORE, None) == 0
    assert store.purge(other, keys) == 0
    assert integrity(store.path) == "ok"


def test_lexical_quotes_terms(store: SQLiteStore) -> None:
    cube = store.cube_id("user:u", create=True)
    [item] = store.insert(
        cube, [row('He said "NEAR(x" AND OR NOT * ^ col:value')], unit(0)[None, :]
    )
    for terms in (['"'], ["NEAR("], ["AND", "OR"], ["*"], ["col:value"], ['x"'], ["^"]):
        store.lexical(cube, terms, 5, MemoryFilter())  # never a syntax error
    assert [s.key for s in store.lexical(cube, ["near"], 5, MemoryFilter())] == [
        _key(store, item.id)
    ]
    assert store.lexical(cube, [], 5, MemoryFilter()) == []


def test_driver_errors_surface_as_store_errors(store: SQLiteStore) -> None:
    """errors.py: 'Driver errors are translated into these at the store boundary.'"""
    cube = store.cube_id("user:u", create=True)
    bad = NewMemory(**{**row("x").__dict__, "text": None})  # violates NOT NULL
    with pytest.raises(StoreError):
        store.insert(cube, [bad], unit(0)[None, :])
