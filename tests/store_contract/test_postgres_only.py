"""What only the PostgreSQL store promises: row-level security per owner, many processes
on one database, migrations run once, erasure that leaves no text, and `Memory` on top of
it answering like the SQLite store."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _store_backends import DIM

from _engram_helpers import HashEmbedder, new_row
from engram import Memory
from engram.errors import EngramError
from engram.store.base import Change, MemoryFilter
from engram.store.feedback import FeedbackEvent, FeedbackLabel
from engram.store.sqlite import SQLiteStore
from engram.types import VersionEvent

psycopg = pytest.importorskip("psycopg")
from engram.store.postgres.schema import MIGRATIONS, OWNED_TABLES  # noqa: E402
from engram.store.postgres.store import PostgresStore  # noqa: E402


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


@pytest.fixture
def pg(pg_url: str) -> Any:
    store = PostgresStore(pg_url, DIM, max_size=4)
    yield store
    store.close()


def _two_owners(store: PostgresStore) -> None:
    for owner, text in (("user:a", "alpha note"), ("user:b", "beta secret")):
        cube = store.cube_id(owner, create=True)
        assert cube is not None
        store.insert(cube, [new_row(text)], unit(0)[None, :])


def test_row_level_security_hides_other_owners_from_a_bare_select(
    pg: PostgresStore, pg_url: str
) -> None:
    _two_owners(pg)
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE ROLE rls_probe LOGIN")
        conn.execute("GRANT engram_app TO rls_probe")
        conn.commit()
    probe_url = pg_url.replace("postgresql://postgres:@", "postgresql://rls_probe:@")
    with psycopg.connect(probe_url) as conn:  # a login that is not the tables' owner
        assert conn.execute("SELECT current_user").fetchone() == ("rls_probe",)
        assert conn.execute("SELECT owner FROM memories").fetchall() == []  # no owner set
        conn.execute("SELECT set_config('engram.owner', 'user:a', true)")
        for table in ("memories", "versions", "cubes"):
            owners = {row[0] for row in conn.execute(f"SELECT owner FROM {table}")}
            assert owners == {"user:a"}, table
        texts = [row[0] for row in conn.execute("SELECT * FROM memories")]
        assert "user:b" not in texts
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # WITH CHECK: no writes
            conn.execute("UPDATE cubes SET owner = 'user:b' WHERE owner = 'user:a'")
    app = PostgresStore(probe_url, DIM, max_size=1)  # Engram itself, as that login
    try:
        cube = app.cube_id("user:a")
        assert cube is not None and app.owners() == ["user:a", "user:b"]
        app.insert(cube, [new_row("written by a plain login")], unit(1)[None, :])
        assert app.dense(cube, unit(1), 1, MemoryFilter())[0].key > 0
    finally:
        app.close()
    with pg.db.tx("user:a") as cur:  # the store's own transactions, a filter forgotten
        cur.execute("SELECT owner, text FROM memories ORDER BY key")
        assert cur.fetchall() == [("user:a", "alpha note"), ("user:a", "written by a plain login")]
    with psycopg.connect(pg_url) as conn:  # the store's own path: SET LOCAL ROLE engram_app
        conn.execute("SELECT set_config('role', 'engram_app', true)")
        conn.execute("SELECT set_config('engram.owner', 'user:b', true)")
        assert [r[0] for r in conn.execute("SELECT text FROM memories")] == ["beta secret"]


def test_every_owned_table_forces_row_level_security(pg: PostgresStore, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relname = ANY(%s)",
            (list(OWNED_TABLES),),
        ).fetchall()
    assert sorted(rows) == sorted((t, True, True) for t in OWNED_TABLES)
    with psycopg.connect(pg_url) as conn:
        indexes = dict(
            conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories'")
        )
        dim = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
        ).fetchone()
    assert "hnsw (embedding vector_cosine_ops)" in indexes["memories_embedding"]
    assert "gin (tsv)" in indexes["memories_tsv"] and dim == (f"vector({DIM})",)


def test_a_write_through_one_store_is_found_by_anothers_search(pg_url: str) -> None:
    a, b = PostgresStore(pg_url, DIM), PostgresStore(pg_url, DIM)
    try:
        cube = a.cube_id("user:a", create=True)
        assert cube is not None
        a.insert(cube, [new_row("old news")], unit(0)[None, :])
        assert len(b.snapshot(cube)) == 1  # B's cache is warm
        [item] = a.insert(cube, [new_row("zebra crossing")], unit(4)[None, :])
        key = a.locate(item.id).key  # type: ignore[union-attr]
        assert b.dense(cube, unit(4), 1, MemoryFilter())[0].key == key
        assert [s.key for s in b.lexical(cube, ["zebra"], 5, MemoryFilter())] == [key]
        a.change(cube, key, Change(VersionEvent.UPDATE, "zebra moved", "zebra moved", unit(6)))
        assert b.dense(cube, unit(6), 1, MemoryFilter())[0].key == key
    finally:
        a.close()
        b.close()


def test_repeated_statements_are_planned_for_their_own_values(pg_url: str) -> None:
    """psycopg prepares a statement run five times, and PostgreSQL would then plan it once
    for any owner and keys (a generic plan read a 100,000-memory owner through its cube
    index to fetch ten memories). Every execution gets a plan of its own."""
    store = PostgresStore(pg_url, DIM, max_size=1)  # one connection: the same statements
    try:
        cube = store.cube_id("user:a", create=True)
        assert cube is not None
        items = store.insert(
            cube, [new_row(f"note {i}") for i in range(8)], np.stack([unit(i) for i in range(8)])
        )
        keys = [store.locate(item.id).key for item in items]  # type: ignore[union-attr]
        for i in range(12):
            assert list(store.by_keys(cube, keys[i % 8 : i % 8 + 1])) == [keys[i % 8]]
        with store.db.tx("user:a") as cur:
            cur.execute("SHOW plan_cache_mode")
            assert cur.fetchone() == ("force_custom_plan",)
            cur.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE '%%m.key = ANY%%'"
            )
            [(generic, custom)] = cur.fetchall()
        assert generic == 0 and custom >= 6  # prepared, and planned afresh each time
    finally:
        store.close()


def test_concurrent_starts_migrate_once(pg_url: str) -> None:
    barrier = threading.Barrier(4)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(PostgresStore(pg_url, DIM, min_size=0, max_size=1))
        except EngramError as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in opened:
        store.close()
    assert errors == [] and len(opened) == 4
    with psycopg.connect(pg_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]


def _all_text(pg_url: str) -> str:
    """Every row of every table in the schema, as text, read as the superuser (no RLS)."""
    with psycopg.connect(pg_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        return "\n".join(
            str(row[0]) for t in tables for row in conn.execute(f"SELECT t::text FROM {t} t")
        )


def test_hard_delete_leaves_no_text_in_any_table(pg: PostgresStore, pg_url: str) -> None:
    _two_owners(pg)
    cube = pg.cube_id("user:a")
    assert cube is not None
    [item] = pg.insert(cube, [new_row("xylophone-marker first")], unit(1)[None, :])
    key = pg.locate(item.id).key  # type: ignore[union-attr]
    second = "xylophone-marker second"
    change = Change(VersionEvent.UPDATE, second, second, unit(2), {"note": "xylophone-marker"})
    pg.change(cube, key, change)
    used = [FeedbackEvent(key, FeedbackLabel.USED)]
    pg.add_feedback(cube, "xylophone-marker?", unit(2), used, None)
    pg.claim_idempotency("user:a", "k", "fp", 3600, 60)
    pg.finish_idempotency("user:a", "k", 201, '{"memory": "xylophone-marker"}')
    assert "xylophone-marker" in _all_text(pg_url)
    assert pg.purge(cube, [key]) == 1
    dump = _all_text(pg_url)
    assert "xylophone-marker" not in dump and "xylophone" not in dump
    assert "alpha note" in dump and "beta secret" in dump  # the rest is intact


# -- Memory over PostgreSQL ------------------------------------------------------------------

FACTS = [
    ("I adopted a beagle named Biscuit last spring", "s1"),
    ("My sister lives in Lisbon and teaches piano", "s1"),
    ("I am allergic to peanuts and shellfish", "s2"),
    ("We are planning a trip to Kyoto in April", "s2"),
    ("Biscuit loves chasing tennis balls in the park", "s3"),
    ("I switched jobs and now work as a data engineer", "s3"),
]
QUERIES = ["what is Biscuit", "allergic to peanuts", "trip plans", "sister in Lisbon", "tennis"]


def _exercise(memory: Memory) -> dict[str, Any]:
    ids = []
    for text, session in FACTS:
        [item] = memory.add(text, user_id="alice", session_id=session)
        ids.append(item.id)
    memory.add("Bob's private note about Biscuit", user_id="bob")
    osaka = "We are planning a trip to Osaka in May"
    memory.update(ids[3], osaka, reason="changed plans", user_id="alice")
    memory.delete(ids[5], user_id="alice")  # soft
    memory.delete(ids[1], hard=True, user_id="alice")
    out: dict[str, Any] = {
        query: [(h.memory, round(h.score, 4)) for h in memory.search(query, user_id="alice", k=4)]
        for query in QUERIES
    }
    out["history"] = [
        (v.version, v.event, v.memory) for v in memory.history(ids[3], user_id="alice")
    ]
    out["soft"] = memory.get(ids[5], user_id="alice").state
    memory.restore(ids[5], user_id="alice")
    memory.feedback(QUERIES[0], cited=[ids[4]], wrong=[ids[0]], user_id="alice")
    out["after feedback"] = [h.memory for h in memory.search(QUERIES[0], user_id="alice", k=3)]
    pages, cursor = [], None
    while True:
        page = memory.get_all(user_id="alice", limit=2, cursor=cursor)
        pages.append([i.memory for i in page.items])
        if not (cursor := page.next_cursor):
            break
    out["pages"] = pages
    out["session s2"] = [i.memory for i in memory.get_all(user_id="alice", session_id="s2").items]
    memory.pin(ids[0], user_id="alice")
    [parking] = memory.add("parking spot is B12", user_id="alice", ttl=3600)
    text_of = dict(zip([*ids, parking.id], [t for t, _ in FACTS] + [parking.memory], strict=True))
    out["gc"] = [
        (text_of[d.id], d.action, d.rule, round(d.retrievability, 4))
        for d in memory.gc(user_id="alice", at="2031-01-01T00:00:00").decisions
    ]
    stats = memory.stats(user_id="alice")
    out["stats"] = (stats.active, stats.archived, stats.by_type, stats.sessions)
    memory.delete_all(user_id="bob", hard=True)
    out["owners"] = memory.owners()
    return out


def test_memory_on_postgres_answers_like_sqlite(pg_url: str, tmp_path: Path) -> None:
    embedder = HashEmbedder(64)
    results = []
    for store in (SQLiteStore(tmp_path / "engram.db", 64), PostgresStore(pg_url, 64)):
        memory = Memory(home=tmp_path, embedder=embedder, store=store)
        try:
            results.append(_exercise(memory))
        finally:
            memory.close()
            store.close()
    sqlite, postgres = results
    assert postgres["history"][-1] == (
        2,
        VersionEvent.UPDATE,
        "We are planning a trip to Osaka in May",
    )
    assert all("Bob" not in m for q in QUERIES for m, _ in postgres[q])
    for query in QUERIES:
        assert [m for m, _ in postgres[query]] == [m for m, _ in sqlite[query]], query
        assert [s for _, s in postgres[query]] == pytest.approx([s for _, s in sqlite[query]])
    assert postgres == sqlite
