"""Search of a large cube on PostgreSQL: candidates come from the database (HNSW nearest
neighbours + full text, one owner), the hybrid signals are computed on them, and a write
through one store is found through another store's next search."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from _engram_helpers import HashEmbedder, new_row
from engram import Memory
from engram.store.base import MemoryFilter
from engram.text.retrieval import QueryContext, build_pipeline

pytest.importorskip("psycopg")
from engram.store.postgres.store import PostgresStore  # noqa: E402

DIM = 256
EMBED = HashEmbedder(DIM)
FACTS = [
    "Maya adopted a grey cat from the shelter",
    "Tomas fixed the old bicycle with a new chain",
    "The team dinner moved to Friday at the harbour",
    "Maya started learning the cello last winter",
    "Tomas planted tomatoes on the balcony in April",
]
FILLER = [f"routine note number {i} about errands and chores" for i in range(40)]


def _store(url: str, exact_max: int | None) -> PostgresStore:
    return PostgresStore(url, DIM, max_size=4, exact_search_max=exact_max, search_candidates=16)


def _fill(store: PostgresStore, owner: str, texts: list[str]) -> int:
    cube = store.cube_id(owner, create=True)
    assert cube is not None
    rows = [replace(new_row(t), session_id=f"s{i // 5}") for i, t in enumerate(texts)]
    store.insert(cube, rows, EMBED.embed(texts))
    return cube


def _search(store: PostgresStore, cube: int, query: str, flt: MemoryFilter | None = None) -> Any:
    ctx = QueryContext(store, cube, query, flt or MemoryFilter(), EMBED.embed_one)
    hits = build_pipeline("hybrid").retrieve(ctx, 3)
    items = store.by_keys(cube, [h.key for h in hits])
    return [items[h.key].memory for h in hits], ctx.snapshot


@pytest.fixture
def url(pg_url: str) -> str:
    store = _store(pg_url, None)
    _fill(store, "user:big", FILLER + FACTS + FILLER)
    _fill(store, "user:other", FACTS)  # the same words in another owner's cube
    store.close()
    return pg_url


def test_a_large_cube_is_searched_on_database_candidates(url: str) -> None:
    exact, narrow = _store(url, None), _store(url, 10)
    try:
        cube = exact.cube_id("user:big")
        assert cube is not None
        for query in ("which pet did Maya adopt", "bicycle chain", "balcony tomatoes April"):
            want, whole = _search(exact, cube, query)
            got, candidates = _search(narrow, cube, query)
            assert got[0] == want[0], query
            assert len(whole) == 85 and 0 < len(candidates) <= 32  # 16 nearest + 16 full text
            assert candidates.keys.tolist() == sorted(candidates.keys.tolist())
        probe = EMBED.embed_one(FACTS[3])
        nearest = [exact.dense(cube, probe, 1, MemoryFilter())[0].key]
        assert [s.key for s in narrow.dense(cube, probe, 1, MemoryFilter())] == nearest
    finally:
        exact.close()
        narrow.close()


def test_candidates_stay_in_the_owners_cube_and_filter(url: str) -> None:
    store = _store(url, 10)
    try:
        cube = store.cube_id("user:big")
        other = store.cube_id("user:other")
        assert cube is not None and other is not None
        _, snap = _search(store, cube, "Maya cat cello")
        owned = store.by_keys(cube, snap.keys.tolist())
        assert len(owned) == len(snap) and not store.by_keys(other, snap.keys.tolist())
        only = MemoryFilter(session_id="s0")
        _, snap = _search(store, cube, "Maya cat cello", only)
        found = store.by_keys(cube, snap.keys.tolist()).values()
        assert len(snap) and {item.provenance.session_id for item in found} == {"s0"}
    finally:
        store.close()


@pytest.mark.parametrize(
    "query", ["cat & !dog | (", "'; DROP TABLE memories; --", ':* <-> \\ "quoted"', "???"]
)
def test_query_syntax_is_plain_text(url: str, query: str) -> None:
    store = _store(url, 10)
    try:
        cube = store.cube_id("user:big")
        assert cube is not None
        _search(store, cube, query)  # no tsquery syntax error, nothing executed
        assert store.stats(cube).active == 85
    finally:
        store.close()


def test_a_write_through_one_server_is_found_through_another_within_a_second(
    url: str, tmp_path: Path
) -> None:
    stores = [_store(url, 10), _store(url, 10)]
    a, b = (
        Memory(home=tmp_path / n, embedder=EMBED, store=s)
        for n, s in zip("ab", stores, strict=True)
    )
    try:
        assert b.search("zebra crossing on the main road", user_id="big")  # B warm
        written = time.perf_counter()
        a.add("A zebra crossing was painted on the main road", user_id="big")
        found = b.search("zebra crossing on the main road", user_id="big")
        assert time.perf_counter() - written < 1.0
        assert found[0].memory == "A zebra crossing was painted on the main road"
    finally:
        a.close()
        b.close()
        for store in stores:
            store.close()


def test_full_text_matches_may_use_the_gin_index_under_row_level_security(url: str) -> None:
    """The migrations (run by a superuser here) mark ts_match_vq LEAKPROOF, so the app
    role's `tsv @@ q` may be an index condition despite the owner policy (a function that
    is not leakproof must wait for the policy's filter: a scan of every row)."""
    store = _store(url, 10)
    try:
        with store.db.tx("user:big") as cur:
            cur.execute("SELECT proleakproof FROM pg_proc WHERE proname = 'ts_match_vq'")
            assert cur.fetchone() == (True,)
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute(
                "EXPLAIN SELECT key FROM memories WHERE tsv @@ plainto_tsquery('english', %s)",
                ("cello",),
            )
            plan = "\n".join(row[0] for row in cur.fetchall())
        assert "Bitmap Index Scan on memories_tsv" in plan, plan
    finally:
        store.close()
