"""The scale-out store: PostgreSQL with pgvector and tsvector, shared by many processes.

Each method is one owner-scoped transaction (see conn.py). A cube's snapshot (vectors and
texts for retrieval) is a per-process cache checked against the cube's revision, which
every write to the cube bumps in its own transaction: one read per search, and a write by
any process is seen by every other's next search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from engram.errors import CubeGoneError, EmbedderMismatchError, NotFoundError, StoreError
from engram.store.base import (
    Change,
    Located,
    MemoryFilter,
    NewMemory,
    Scored,
)
from engram.store.feedback import FeedbackLog
from engram.store.postgres import memories, schema, sql
from engram.store.postgres.candidates import fetch_candidates
from engram.store.postgres.conn import ALL_OWNERS, Database, describe, store_error
from engram.store.postgres.lifecycle import LifecycleMethods
from engram.store.postgres.mounts import MountMethods
from engram.store.postgres.queue import QueueMethods
from engram.store.postgres.snapshots import Snapshots
from engram.store.vector_index import CubeSnapshot, top_k
from engram.types import CubeStats, MemoryItem, MemoryState, Version, VersionEvent


def _now() -> datetime:
    return datetime.now(UTC)


class PostgresStore(LifecycleMethods, QueueMethods, MountMethods):
    """Store protocol over one PostgreSQL database (pgvector required)."""

    def __init__(
        self,
        url: str,
        dim: int | None = None,
        *,
        app_role: str = "engram_app",
        min_size: int = 1,
        max_size: int = 8,
        timeout_s: float = 30.0,
        exact_search_max: int | None = 20_000,
        search_candidates: int = 200,
        hnsw_ef_search: int = 400,
    ):
        """Migrates the database first (once across processes); `dim=None`: the vector
        size the store recorded with its embedder. Cubes with more than `exact_search_max`
        active memories (None: no limit) are searched on `search_candidates` nearest and
        as many full-text candidates the database finds (`hnsw_ef_search`: the HNSW
        search list, before the owner filter)."""
        self.where = describe(url)
        self._dim = dim
        schema.prepare(url, self.where, app_role, timeout_s, dim)
        self.url = url
        self.db = Database(url, app_role, min_size, max_size, timeout_s)
        self._owners: dict[int, str] = {}
        self._owners_lock = threading.Lock()
        self.snapshots = Snapshots(self.db, lambda: self.dim, exact_search_max)
        self.search_candidates = search_candidates
        self.hnsw_ef_search = hnsw_ef_search
        self._feedback: dict[int, FeedbackLog] = {}

    @property
    def dim(self) -> int:
        if self._dim is None:
            with self.db.tx(ALL_OWNERS) as cur:
                cur.execute("SELECT value FROM meta WHERE key = 'embedder.dim'")
                row = cur.fetchone()
            if row is None:
                raise StoreError(f"{self.where} has no embedder recorded yet")
            self._dim = int(row[0])
        return self._dim

    # -- identity ---------------------------------------------------------------------

    def recorded_embedder(self) -> str | None:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute("SELECT value FROM meta WHERE key = 'embedder.name'")
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def check_embedder(self, name: str, dim: int) -> None:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute(
                "INSERT INTO meta VALUES ('embedder.name', %s), ('embedder.dim', %s) "
                "ON CONFLICT DO NOTHING",
                (name, str(dim)),
            )
            cur.execute("SELECT key, value FROM meta WHERE key LIKE 'embedder.%%'")
            rows = dict(cur.fetchall())
        stored_name, stored_dim = rows.get("embedder.name"), int(rows.get("embedder.dim", 0))
        if stored_name != name or stored_dim != dim:
            raise EmbedderMismatchError(
                f"{self.where} was built with embedder {stored_name!r} ({stored_dim}-d) "
                f"but {name!r} ({dim}-d) is configured; configure the original embedder, "
                "or use another database_url for the new one"
            )
        if self._dim is None:
            self._dim = dim
            try:
                with psycopg.connect(self.url) as conn:
                    schema.ensure_dim(conn, dim)
            except psycopg.Error as err:
                raise store_error(err, self.where, "index vectors in") from err

    def cube_id(self, owner: str, create: bool = False) -> int | None:
        with self.db.tx(owner) as cur:
            if create:
                cur.execute(
                    "INSERT INTO cubes (owner, created_at) VALUES (%s, %s) "
                    "ON CONFLICT (owner) DO NOTHING",
                    (owner, _now()),
                )
            cur.execute("SELECT id FROM cubes WHERE owner = %s", (owner,))
            row = cur.fetchone()
        if row is None:
            return None
        with self._owners_lock:
            self._owners[row[0]] = owner
        return int(row[0])

    def owner_of(self, cube: int) -> str:
        """The owner of a cube id ('' when there never was one: matches no row). Cube ids
        are never reused, so the answer is cached for good."""
        with self._owners_lock:
            found = self._owners.get(cube)
        if found is not None:
            return found
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute("SELECT owner FROM cubes WHERE id = %s", (cube,))
            row = cur.fetchone()
        if row is None:
            return ""
        with self._owners_lock:
            self._owners[cube] = row[0]
        return str(row[0])

    def owners(self) -> list[str]:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute('SELECT owner FROM cubes ORDER BY owner COLLATE "C"')
            return [row[0] for row in cur.fetchall()]

    @contextmanager
    def _write(self, cube: int, gone: type[Exception] = CubeGoneError) -> Iterator[Any]:
        """A transaction holding the cube's row lock (writers of one cube take turns)."""
        owner = self.owner_of(cube)
        with self.db.tx(owner) as cur:
            cur.execute(
                "SELECT 1 FROM cubes WHERE owner = %s AND id = %s FOR UPDATE", (owner, cube)
            )
            if cur.fetchone() is None:
                raise gone(f"cube {cube} no longer exists (its memories were erased)")
            yield owner, cur

    # -- writes -----------------------------------------------------------------------

    def insert(self, cube: int, rows: list[NewMemory], vectors: np.ndarray) -> list[MemoryItem]:
        if len(rows) != len(vectors):
            raise StoreError(f"{len(rows)} rows but {len(vectors)} vectors")
        if len(rows) and vectors.shape[1] != self.dim:
            raise StoreError(f"vectors have dimension {vectors.shape[1]}, store has {self.dim}")
        now = _now()
        keys: list[int] = []
        new: list[tuple[int, np.ndarray, NewMemory]] = []
        with self._write(cube) as (owner, cur):
            written = memories.insert_many(cur, owner, cube, rows, vectors, now)
            for row, vec, (key, fresh) in zip(rows, vectors, written, strict=True):
                keys.append(key)
                if fresh:
                    new.append((key, vec, row))
            if new:
                old_rev, new_rev = memories.bump(cur, owner, cube)
            found = memories.items_by_keys(cur, owner, cube, keys)
        if new:
            self.snapshots.appended(cube, old_rev, new_rev, new, now)
        return [found[key] for key in keys]

    def change(self, cube: int, key: int, change: Change) -> MemoryItem:
        with self._write(cube, NotFoundError) as (owner, cur):
            active = memories.change(cur, owner, cube, key, change, _now())
            if active is None:
                raise NotFoundError(f"memory key {key} is not in cube {cube} (erased meanwhile?)")
            old, new = memories.bump(cur, owner, cube)
            item = memories.items_by_keys(cur, owner, cube, [key])[key]
        if change.vector is not None and active:
            self.snapshots.drop(cube)  # reloaded on the next search
        else:
            self.snapshots.removed(cube, old, new, [])
        return item

    def set_state(
        self,
        cube: int,
        keys: list[int],
        state: MemoryState,
        event: VersionEvent,
        reason: str | None,
        source: str | None = None,
    ) -> int:
        if not keys or not self.owner_of(cube):
            return 0
        try:
            with self._write(cube) as (owner, cur):
                changed = memories.set_state(
                    cur, owner, cube, keys, state, event, reason, source, _now()
                )
                if changed:
                    old, new = memories.bump(cur, owner, cube)
        except CubeGoneError:
            return 0
        if changed and state is MemoryState.ACTIVE:
            self.snapshots.drop(cube)  # restored rows rejoin in key order on reload
        elif changed:
            self.snapshots.removed(cube, old, new, changed)
        return len(changed)

    def purge(self, cube: int, keys: list[int]) -> int:
        """Erase rows, versions and feedback in one transaction; dead row versions stay
        in PostgreSQL's pages until (auto)vacuum reclaims them (docs/postgres.md)."""
        if not keys or not self.owner_of(cube):
            return 0
        try:
            with self._write(cube) as (owner, cur):
                found, emptied, (old, new) = memories.purge(cur, owner, cube, keys)
        except CubeGoneError:
            return 0
        self.snapshots.removed(cube, old, new, found)
        if emptied:
            self.snapshots.drop(cube)
        return len(found)

    def record_access(self, cube: int, counts: dict[int, int], at: datetime) -> None:
        if counts:
            owner = self.owner_of(cube)
            with self.db.tx(owner) as cur:
                memories.record_access(cur, owner, cube, counts, memories.utc(at))

    # -- reads ------------------------------------------------------------------------

    def _read(self, cube: int) -> Any:
        return self.db.tx(self.owner_of(cube))

    def by_keys(self, cube: int, keys: list[int]) -> dict[int, MemoryItem]:
        with self._read(cube) as cur:
            return memories.items_by_keys(cur, self.owner_of(cube), cube, keys)

    def keys(self, cube: int, flt: MemoryFilter) -> list[int]:
        query, params = sql.filtered_keys_sql(self.owner_of(cube), cube, flt)
        with self._read(cube) as cur:
            cur.execute(query, params)
            return [row[0] for row in cur.fetchall()]

    def known_sources(self, cube: int, source_ids: list[str]) -> set[str]:
        owner = self.owner_of(cube)
        with self._read(cube) as cur:
            cur.execute(
                "SELECT source_id FROM memories WHERE owner = %s AND cube_id = %s AND "
                "source_id = ANY(%s) UNION SELECT id FROM memories WHERE owner = %s AND "
                "cube_id = %s AND id = ANY(%s)",
                (owner, cube, source_ids, owner, cube, source_ids),
            )
            return {row[0] for row in cur.fetchall()}

    def locate(self, memory_id: str) -> Located | None:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute("SELECT cube_id, key, owner FROM memories WHERE id = %s", (memory_id,))
            row = cur.fetchone()
        return Located(int(row[0]), int(row[1]), row[2]) if row else None

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute(
                "SELECT id FROM memories WHERE id >= %s AND id < %s ORDER BY id LIMIT %s",
                (prefix, upper, limit),
            )
            return [row[0] for row in cur.fetchall()]

    def page(
        self, cube: int, flt: MemoryFilter, limit: int, after: int | None
    ) -> tuple[list[MemoryItem], int | None]:
        query, params = sql.page_sql(self.owner_of(cube), cube, flt, limit + 1, after)
        with self._read(cube) as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        items = [memories.item_from_row(row) for row in rows[:limit]]
        return items, (rows[limit - 1][0] if len(rows) > limit else None)

    def history(self, cube: int, key: int) -> list[Version]:
        with self._read(cube) as cur:
            return memories.history(cur, self.owner_of(cube), cube, key)

    def lexical(self, cube: int, terms: list[str], k: int, flt: MemoryFilter) -> list[Scored]:
        if not terms:
            return []
        query, params = sql.lexical_sql(self.owner_of(cube), cube, terms, k, flt)
        with self._read(cube) as cur:
            cur.execute(query, params)
            return [Scored(int(key), float(score)) for key, score in cur.fetchall()]

    def dense(self, cube: int, vector: np.ndarray, k: int, flt: MemoryFilter) -> list[Scored]:
        if vector.shape != (self.dim,):
            raise StoreError(f"query vector has shape {vector.shape}, store has ({self.dim},)")
        if flt.states != (MemoryState.ACTIVE,):
            keys = np.asarray(self.keys(cube, flt), dtype=np.int64)
            matrix = self.vectors(cube, keys.tolist())
            return [Scored(k_, s) for k_, s in top_k(keys, matrix @ vector, k)]
        owner = self.owner_of(cube)
        snap = self.snapshots.exact(cube, owner)
        if snap is None:  # a large cube: the HNSW index finds them, the filter applied
            found = fetch_candidates(self.db, owner, cube, [], vector, k, self.hnsw_ef_search, flt)
            return [Scored(k_, s) for k_, s in found.top(vector, k, None)]
        allowed = None if flt.is_trivial else np.asarray(self.keys(cube, flt), dtype=np.int64)
        return [Scored(k_, s) for k_, s in snap.top(vector, k, allowed)]

    def snapshot(self, cube: int) -> CubeSnapshot:
        return self.snapshots.get(cube, self.owner_of(cube))

    def search_snapshot(
        self,
        cube: int,
        terms: list[str],
        vector: Callable[[], np.ndarray],
        flt: MemoryFilter,
    ) -> CubeSnapshot:
        owner = self.owner_of(cube)
        snap = self.snapshots.exact(cube, owner)
        if snap is not None:
            return snap
        return fetch_candidates(
            self.db, owner, cube, terms, vector(), self.search_candidates, self.hnsw_ef_search, flt
        )

    def vectors(self, cube: int, keys: list[int]) -> np.ndarray:
        with self._read(cube) as cur:
            cur.execute(
                "SELECT key, embedding FROM memories WHERE owner = %s AND cube_id = %s "
                "AND key = ANY(%s)",
                (self.owner_of(cube), cube, keys),
                binary=True,
            )
            found = {row[0]: memories.as_array(row[1]) for row in cur.fetchall()}
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def stats(self, cube: int) -> CubeStats:
        with self._read(cube) as cur:
            stats = memories.cube_stats(cur, self.owner_of(cube), cube)
        if stats is None:
            raise NotFoundError(f"cube {cube} no longer exists")
        return stats

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self.db.joined():
                yield
        except BaseException:
            self.snapshots.drop()  # writes inside patched cached snapshots; rolled back
            raise

    def close(self) -> None:
        self.db.close()
        self.snapshots.drop()
