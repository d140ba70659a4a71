"""Per-process cube snapshots over PostgreSQL: validated by the cube's revision (one small
read per search), patched by this process's own writes, reloaded in one REPEATABLE READ
transaction when another process wrote. Searches hold a cube in process only while it has
at most `exact_max` active memories (`exact`); larger cubes are searched on candidates the
database finds (engram.store.postgres.candidates)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engram.store.base import NewMemory
from engram.store.postgres.conn import Database
from engram.store.postgres.memories import as_array, stored_vector
from engram.store.vector_index import CubeSnapshot, SnapshotCache, SnapshotRow, build_snapshot


def epoch_days(value: datetime) -> float:
    """Days since 1970-01-01 UTC (naive times are UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.timestamp() / 86400.0


class Snapshots:
    def __init__(self, db: Database, dim: Callable[[], int], exact_max: int | None = None):
        self.db = db
        self._dim = dim
        self._cache = SnapshotCache()
        self.exact_max = exact_max  # None: every cube is searched exactly
        self._large: dict[int, tuple[int, bool]] = {}  # cube -> (rev, over exact_max)
        self._large_lock = threading.Lock()

    def exact(self, cube: int, owner: str) -> CubeSnapshot | None:
        """The cube's snapshot for an exact search, or None when the cube has more than
        `exact_max` active memories. One small read per search (the revision), plus one
        index-only count of at most exact_max + 1 rows after another process wrote."""
        if self.exact_max is None:
            return self.get(cube, owner)
        with self.db.tx(owner) as cur:
            rev = self._rev(cur, cube, owner)
            entry = self._cache.cached(cube, rev)
            if entry is not None:
                return entry
            with self._large_lock:
                known = self._large.get(cube)
            if known is None or known[0] != rev:
                cur.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM memories WHERE owner = %s AND "
                    "cube_id = %s AND state = 'active' LIMIT %s) s",
                    (owner, cube, self.exact_max + 1),
                )
                known = (rev, cur.fetchone()[0] > self.exact_max)  # type: ignore[index]
                with self._large_lock:
                    self._large[cube] = known
        if known[1]:
            self._cache.drop(cube)  # grown past the limit: free what this process held
            return None
        return self.get(cube, owner)

    @staticmethod
    def _rev(cur: Any, cube: int, owner: str) -> int:
        cur.execute("SELECT rev FROM cubes WHERE owner = %s AND id = %s", (owner, cube))
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def get(self, cube: int, owner: str) -> CubeSnapshot:
        with self.db.tx(owner) as cur:
            rev = self._rev(cur, cube, owner)
        entry = self._cache.cached(cube, rev)
        if entry is not None:
            return entry
        with self.db.tx(owner, snapshot=True) as cur:
            cur.execute("SELECT rev FROM cubes WHERE owner = %s AND id = %s", (owner, cube))
            row = cur.fetchone()
            cur.execute(
                "SELECT key, embedding, session_id, name, COALESCE(occurred_at, created_at), "
                "index_text FROM memories WHERE owner = %s AND cube_id = %s AND "
                "state = 'active' ORDER BY key",
                (owner, cube),
                binary=True,  # vectors as float4 bytes, not text to parse
            )
            rows = cur.fetchall()
        snapshot = build_snapshot(
            row[0] if row else 0,
            [SnapshotRow(r[0], as_array(r[1]), r[2], r[3], epoch_days(r[4]), r[5]) for r in rows],
            self._dim(),
        )
        return self._cache.put(cube, snapshot)

    def appended(
        self,
        cube: int,
        old_rev: int,
        new_rev: int,
        new: list[tuple[int, np.ndarray, NewMemory]],
        now: datetime,
    ) -> None:
        stored = epoch_days(now)
        rows = [
            SnapshotRow(
                key,
                stored_vector(vec),
                r.session_id,
                r.name,
                epoch_days(r.occurred_at) if r.occurred_at else stored,
                r.index_text,
            )
            for key, vec, r in new
        ]
        self._cache.append(cube, old_rev, new_rev, rows)

    def removed(self, cube: int, old_rev: int, new_rev: int, keys: list[int]) -> None:
        self._cache.remove(cube, old_rev, new_rev, keys)

    def drop(self, cube: int | None = None) -> None:
        self._cache.drop(cube)
        with self._large_lock:
            if cube is None:
                self._large.clear()
            else:
                self._large.pop(cube, None)
