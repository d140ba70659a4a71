"""Large batches on PostgreSQL: `Store.insert` of 64 rows or more goes through COPY into a
temporary table and one INSERT ... SELECT, with the same results as row by row (keys in
input order, idempotent on source ids, versions written); the bulk-load helpers drop and
rebuild the HNSW index."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from _engram_helpers import new_row
from engram.store.base import MemoryFilter

pytest.importorskip("psycopg")
from engram.store.postgres.bulk import build_vector_index, drop_vector_index  # noqa: E402
from engram.store.postgres.memories import COPY_FROM  # noqa: E402
from engram.store.postgres.store import PostgresStore  # noqa: E402

DIM = 8


def _vectors(n: int) -> np.ndarray:
    v = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_large_batch_is_copied_with_the_contract_of_insert(pg_url: str) -> None:
    store = PostgresStore(pg_url, DIM, max_size=2)
    try:
        cube = store.cube_id("user:a", create=True)
        assert cube is not None
        [first] = store.insert(cube, [new_row("already here", source_id="s-3")], _vectors(1))
        n = COPY_FROM + 6
        rows = [replace(new_row(f"memory {i}"), source_id=f"s-{i % (n - 2)}") for i in range(n)]
        items = store.insert(cube, rows, _vectors(n))
        assert len(items) == n
        assert items[3].id == first.id and items[3].memory == "already here"  # kept
        assert items[n - 2].id == items[0].id and items[n - 1].id == items[1].id  # batch twins
        fresh = [it for i, it in enumerate(items) if i not in (3, n - 2, n - 1)]
        assert [it.memory for it in fresh] == [f"memory {i}" for i in range(n - 2) if i != 3]
        keys = [store.locate(it.id).key for it in fresh]  # type: ignore[union-attr]
        assert keys == sorted(keys)  # keys follow input order
        assert store.stats(cube).active == n - 2
        assert [v.event.value for v in store.history(cube, keys[0])] == ["add"]
        assert len(store.snapshot(cube)) == n - 2
    finally:
        store.close()


def test_drop_and_build_the_vector_index(pg_url: str) -> None:
    store = PostgresStore(pg_url, DIM, max_size=2)
    try:
        cube = store.cube_id("user:a", create=True)
        assert cube is not None
        drop_vector_index(pg_url)
        store.insert(cube, [new_row(f"m{i}") for i in range(COPY_FROM)], _vectors(COPY_FROM))
        build_vector_index(pg_url, work_mem="64MB", workers=0)
        with store.db.tx("user:a") as cur:
            cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'memories_embedding'")
            assert "hnsw" in cur.fetchone()[0]  # type: ignore[index]
        assert len(store.dense(cube, _vectors(1)[0], 5, MemoryFilter())) == 5
    finally:
        store.close()
