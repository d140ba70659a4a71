"""The embedded default store: SQLite in WAL mode, FTS5 for BM25, a numpy vector index.

One writer at a time (a process-wide lock plus `BEGIN IMMEDIATE` across processes),
readers concurrent, every multi-row change inside one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engram.errors import EmbedderMismatchError, SchemaVersionError, StoreError
from engram.store import sql
from engram.store.base import Change, Located, MemoryFilter, NewMemory, Scored
from engram.store.migrations import MIGRATIONS
from engram.store.vector_index import (
    CubeSnapshot,
    SnapshotCache,
    SnapshotRow,
    build_snapshot,
    decode_matrix,
    encode_vector,
    top_k,
)
from engram.types import (
    CubeStats,
    MemoryItem,
    MemoryState,
    Provenance,
    Version,
    VersionEvent,
)


def _now() -> str:
    return sql.iso(datetime.now(UTC))


class SQLiteStore:
    """Store protocol over one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        dim: int,
        synchronous: str = "FULL",
        busy_timeout_s: float = 30.0,
    ):
        self.path = Path(path)
        self.dim = dim
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._snapshots = SnapshotCache()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create store directory {self.path.parent}: {err}") from err
        self._migrate()

    # -- connections and transactions -------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")  # erased text is zeroed, not left in pages
        except sqlite3.Error as err:
            raise StoreError(f"cannot open SQLite store {self.path}: {err}") from err
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits or none of it does."""
        with self._write_lock:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise StoreError(f"cannot start a write transaction: {err}") from err
            try:
                yield conn
            except sqlite3.Error as err:
                conn.execute("ROLLBACK")
                raise StoreError(f"write failed, nothing was changed: {err}") from err
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                conn.execute("ROLLBACK")
                raise StoreError(f"commit failed: {err}") from err

    def _read(self, query: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(query, params).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"read failed: {err}") from err

    def _migrate(self) -> None:
        known = [name for name, _ in MIGRATIONS]
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            applied = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            unknown = applied - set(known)
            if unknown:
                raise SchemaVersionError(
                    f"store {self.path} has migrations this Engram does not know "
                    f"({', '.join(sorted(unknown))}); upgrade Engram to open it"
                )
            for name, script in MIGRATIONS:
                if name in applied:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, _now()))

    # -- identity ---------------------------------------------------------------------

    def check_embedder(self, name: str, dim: int) -> None:
        with self._write() as conn:
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'embedder.%'"))
            if not rows:
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("embedder.name", name), ("embedder.dim", str(dim))],
                )
                return
        stored_name, stored_dim = rows.get("embedder.name"), int(rows.get("embedder.dim", 0))
        if stored_name != name or stored_dim != dim:
            raise EmbedderMismatchError(
                f"store {self.path} was built with embedder {stored_name!r} ({stored_dim}-d) "
                f"but {name!r} ({dim}-d) is configured; configure the original embedder, "
                "or use another ENGRAM_HOME / database_url for the new one"
            )

    def cube_id(self, owner: str, create: bool = False) -> int | None:
        rows = self._read("SELECT id FROM cubes WHERE owner = ?", (owner,))
        if rows or not create:
            return rows[0][0] if rows else None
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO cubes (owner, created_at) VALUES (?, ?)", (owner, _now())
            )
            return conn.execute("SELECT id FROM cubes WHERE owner = ?", (owner,)).fetchone()[0]

    def owners(self) -> list[str]:
        return [row[0] for row in self._read("SELECT owner FROM cubes ORDER BY owner")]

    def _bump(self, conn: sqlite3.Connection, cube: int) -> tuple[int, int]:
        new = conn.execute(
            "UPDATE cubes SET rev = rev + 1 WHERE id = ? RETURNING rev", (cube,)
        ).fetchone()[0]
        return new - 1, new

    # -- writes -----------------------------------------------------------------------

    def insert(self, cube: int, rows: list[NewMemory], vectors: np.ndarray) -> list[MemoryItem]:
        if len(rows) != len(vectors):
            raise StoreError(f"{len(rows)} rows but {len(vectors)} vectors")
        if len(rows) and vectors.shape[1] != self.dim:
            raise StoreError(f"vectors have dimension {vectors.shape[1]}, store has {self.dim}")
        now = _now()
        keys: list[int] = []
        new: list[tuple[int, np.ndarray, NewMemory]] = []
        with self._write() as conn:
            for row, vec in zip(rows, vectors, strict=True):
                key = self._existing_source(conn, cube, row.source_id)
                if key is None:
                    key = self._insert_one(conn, cube, row, vec, now)
                    new.append((key, vec, row))
                keys.append(key)
            if new:
                old_rev, new_rev = self._bump(conn, cube)
        if new:
            stored = _epoch_days(datetime.fromisoformat(now))
            self._snapshots.append(
                cube,
                old_rev,
                new_rev,
                [
                    SnapshotRow(
                        key,
                        vec,
                        r.session_id,
                        r.name,
                        _epoch_days(r.occurred_at) if r.occurred_at else stored,
                        r.index_text,
                    )
                    for key, vec, r in new
                ],
            )
        found = self.by_keys(cube, keys)
        return [found[key] for key in keys]

    @staticmethod
    def _existing_source(conn: sqlite3.Connection, cube: int, source_id: str | None) -> int | None:
        if source_id is None:
            return None
        row = conn.execute(
            "SELECT key FROM memories WHERE cube_id = ? AND source_id = ?", (cube, source_id)
        ).fetchone()
        return row[0] if row else None

    def _insert_one(
        self, conn: sqlite3.Connection, cube: int, row: NewMemory, vec: np.ndarray, now: str
    ) -> int:
        metadata = json.dumps(row.metadata, ensure_ascii=False)
        occurred = sql.iso(row.occurred_at) if row.occurred_at else None
        key = conn.execute(
            "INSERT INTO memories (id, cube_id, type, text, metadata, user_id, agent_id, "
            "session_id, source_id, turn_index, role, name, occurred_at, source, created_at, "
            "updated_at, embedding) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING key",
            (
                str(uuid.uuid4()),
                cube,
                row.type,
                row.text,
                metadata,
                row.user_id,
                row.agent_id,
                row.session_id,
                row.source_id,
                row.turn_index,
                row.role,
                row.name,
                occurred,
                row.source,
                now,
                now,
                encode_vector(vec),
            ),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO versions (memory_key, version, event, text, metadata, source, at) "
            "VALUES (?, 1, 'add', ?, ?, ?, ?)",
            (key, row.text, metadata, row.source, now),
        )
        conn.execute(
            "INSERT INTO memories_fts (rowid, body, cube) VALUES (?, ?, ?)",
            (key, row.index_text, f"c{cube}"),
        )
        return key

    def change(self, cube: int, key: int, change: Change) -> MemoryItem:
        now = _now()
        with self._write() as conn:
            row = conn.execute(
                "SELECT version, text, metadata, state FROM memories WHERE key = ? AND cube_id = ?",
                (key, cube),
            ).fetchone()
            if row is None:
                raise StoreError(f"memory key {key} vanished during update")
            version, text, metadata = row[0] + 1, row[1], row[2]
            active = row[3] == MemoryState.ACTIVE.value
            if change.text is not None:
                text = change.text
            if change.metadata is not None:
                metadata = json.dumps(change.metadata, ensure_ascii=False)
            conn.execute(
                "UPDATE memories SET text = ?, metadata = ?, version = ?, updated_at = ? "
                "WHERE key = ?",
                (text, metadata, version, now, key),
            )
            if change.vector is not None and change.index_text is not None:
                conn.execute(
                    "UPDATE memories SET embedding = ? WHERE key = ?",
                    (encode_vector(change.vector), key),
                )
                conn.execute(
                    "UPDATE memories_fts SET body = ? WHERE rowid = ?", (change.index_text, key)
                )
            conn.execute(
                "INSERT INTO versions (memory_key, version, event, text, metadata, reason, "
                "source, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    version,
                    change.event.value,
                    text,
                    metadata,
                    change.reason,
                    change.source,
                    now,
                ),
            )
            old, new = self._bump(conn, cube)
        if change.vector is not None and active:
            self._snapshots.drop(cube)  # reloaded on the next search
        else:
            self._snapshots.remove(cube, old, new, [])
        return self.by_keys(cube, [key])[key]

    def set_state(
        self,
        cube: int,
        keys: list[int],
        state: MemoryState,
        event: VersionEvent,
        reason: str | None,
    ) -> int:
        now = _now()
        changed: list[int] = []
        with self._write() as conn:
            for key in keys:
                row = conn.execute(
                    "SELECT version, text, metadata, state FROM memories "
                    "WHERE key = ? AND cube_id = ?",
                    (key, cube),
                ).fetchone()
                if row is None or row[3] == state.value:
                    continue
                version = row[0] + 1
                conn.execute(
                    "UPDATE memories SET state = ?, version = ?, updated_at = ? WHERE key = ?",
                    (state.value, version, now, key),
                )
                conn.execute(
                    "INSERT INTO versions (memory_key, version, event, text, metadata, reason, "
                    "at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, version, event.value, row[1], row[2], reason, now),
                )
                changed.append(key)
            if changed:
                old, new = self._bump(conn, cube)
        if changed:
            if state is MemoryState.ACTIVE:
                self._snapshots.drop(cube)  # restored rows rejoin in key order on reload
            else:
                self._snapshots.remove(cube, old, new, changed)
        return len(changed)

    def purge(self, cube: int, keys: list[int]) -> int:
        """Erase rows, versions, index entries and vectors. FTS5 keeps deleted tokens in
        its segments until they merge, so the index is optimized in the same transaction;
        with secure_delete on and the WAL checkpointed, no erased text stays in the files."""
        found: list[int] = []
        with self._write() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                rows = conn.execute(
                    f"SELECT key FROM memories WHERE cube_id = ? AND key IN ({marks})",
                    (cube, *chunk),
                ).fetchall()
                hit = [r[0] for r in rows]
                if not hit:
                    continue
                hmarks = ", ".join("?" for _ in hit)
                conn.execute(f"DELETE FROM versions WHERE memory_key IN ({hmarks})", hit)
                conn.execute(f"DELETE FROM memories_fts WHERE rowid IN ({hmarks})", hit)
                conn.execute(f"DELETE FROM memories WHERE key IN ({hmarks})", hit)
                found += hit
            if not found:
                return 0
            conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('optimize')")
            old, new = self._bump(conn, cube)
        self._snapshots.remove(cube, old, new, found)
        self._checkpoint()
        return len(found)

    def _checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it (best effort under readers)."""
        try:
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            raise StoreError(f"checkpoint after erasure failed: {err}") from err

    def record_access(self, counts: dict[int, int], at: datetime) -> None:
        if not counts:
            return
        stamp = sql.iso(at)
        with self._write() as conn:
            conn.executemany(
                "UPDATE memories SET access_count = access_count + ?, last_accessed_at = ? "
                "WHERE key = ?",
                [(n, stamp, key) for key, n in counts.items()],
            )

    # -- reads ------------------------------------------------------------------------

    def get(self, cube: int, ids: list[str]) -> list[MemoryItem]:
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = self._read(
            f"SELECT {sql.MEMORY_COLUMNS} FROM {sql.FROM_MEMORIES} "
            f"WHERE m.cube_id = ? AND m.id IN ({marks})",
            (cube, *ids),
        )
        by_id = {row[1]: _item(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def by_keys(self, cube: int, keys: list[int]) -> dict[int, MemoryItem]:
        found: dict[int, MemoryItem] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for row in self._read(
                f"SELECT {sql.MEMORY_COLUMNS} FROM {sql.FROM_MEMORIES} "
                f"WHERE m.cube_id = ? AND m.key IN ({marks})",
                (cube, *chunk),
            ):
                found[row[0]] = _item(row)
        return found

    def keys(self, cube: int, flt: MemoryFilter) -> list[int]:
        query, params = sql.filtered_keys_sql(cube, flt)
        return [row[0] for row in self._read(query, params)]

    def locate(self, memory_id: str) -> Located | None:
        rows = self._read(
            f"SELECT m.cube_id, m.key, c.owner FROM {sql.FROM_MEMORIES} WHERE m.id = ?",
            (memory_id,),
        )
        return Located(*rows[0]) if rows else None

    def page(
        self, cube: int, flt: MemoryFilter, limit: int, after: int | None
    ) -> tuple[list[MemoryItem], int | None]:
        query, params = sql.page_sql(cube, flt, limit + 1, after)
        rows = self._read(query, params)
        items = [_item(row) for row in rows[:limit]]
        next_key = rows[limit - 1][0] if len(rows) > limit else None
        return items, next_key

    def history(self, cube: int, key: int) -> list[Version]:
        rows = self._read(
            "SELECT v.version, v.event, v.text, v.metadata, v.reason, v.source, v.at "
            "FROM versions v JOIN memories m ON m.key = v.memory_key "
            "WHERE m.cube_id = ? AND v.memory_key = ? ORDER BY v.version",
            (cube, key),
        )
        return [
            Version(
                version=r[0],
                event=VersionEvent(r[1]),
                memory=r[2],
                metadata=json.loads(r[3]),
                reason=r[4],
                source=r[5],
                at=sql.from_iso(r[6]),
            )
            for r in rows
        ]

    def lexical(self, cube: int, terms: list[str], k: int, flt: MemoryFilter) -> list[Scored]:
        if not terms:
            return []
        query, params = sql.lexical_sql(cube, terms, k, flt)
        return [Scored(key, score) for key, score in self._read(query, params)]

    def _allowed(self, cube: int, flt: MemoryFilter) -> np.ndarray | None:
        if flt.is_trivial:
            return None
        return np.asarray(self.keys(cube, flt), dtype=np.int64)

    def dense(self, cube: int, vector: np.ndarray, k: int, flt: MemoryFilter) -> list[Scored]:
        if vector.shape != (self.dim,):
            raise StoreError(f"query vector has shape {vector.shape}, store has ({self.dim},)")
        allowed = self._allowed(cube, flt)
        if flt.states != (MemoryState.ACTIVE,):
            # archived memories are not in the cached index: score the filtered rows directly
            keys = np.asarray([] if allowed is None else allowed, dtype=np.int64)
            matrix = self.vectors(cube, keys.tolist())
            return [Scored(k_, s) for k_, s in top_k(keys, matrix @ vector, k)]
        entry = self.snapshot(cube)
        return [Scored(k_, s) for k_, s in entry.top(vector, k, allowed)]

    def snapshot(self, cube: int) -> CubeSnapshot:
        conn = self._conn()
        rev = conn.execute("SELECT rev FROM cubes WHERE id = ?", (cube,)).fetchone()
        entry = self._snapshots.cached(cube, rev[0] if rev else 0)
        if entry is not None:
            return entry
        try:  # one read transaction: the revision and the rows come from the same snapshot
            conn.execute("BEGIN")
            rev = conn.execute("SELECT rev FROM cubes WHERE id = ?", (cube,)).fetchone()
            rows = conn.execute(
                "SELECT m.key, m.embedding, m.session_id, m.name, "
                "COALESCE(m.occurred_at, m.created_at), f.body FROM memories m "
                "JOIN memories_fts f ON f.rowid = m.key "
                "WHERE m.cube_id = ? AND m.state = 'active' ORDER BY m.key",
                (cube,),
            ).fetchall()
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"read failed: {err}") from err
        return self._snapshots.put(
            cube,
            build_snapshot(
                rev[0] if rev else 0,
                [
                    SnapshotRow(
                        r[0], vec, r[2], r[3], _epoch_days(datetime.fromisoformat(r[4])), r[5]
                    )
                    for r, vec in zip(
                        rows, decode_matrix([r[1] for r in rows], self.dim), strict=True
                    )
                ],
                self.dim,
            ),
        )

    def _blobs(self, cube: int, keys: list[int]) -> list[bytes]:
        found: dict[int, bytes] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for key, blob in self._read(
                f"SELECT key, embedding FROM memories WHERE cube_id = ? AND key IN ({marks})",
                (cube, *chunk),
            ):
                found[key] = blob
        return [found[k] for k in keys]

    def vectors(self, cube: int, keys: list[int]) -> np.ndarray:
        return decode_matrix(self._blobs(cube, keys), self.dim)

    def stats(self, cube: int) -> CubeStats:
        owner = self._read("SELECT owner FROM cubes WHERE id = ?", (cube,))[0][0]
        states = dict(
            self._read(
                "SELECT state, COUNT(*) FROM memories WHERE cube_id = ? GROUP BY state", (cube,)
            )
        )
        by_type = dict(
            self._read(
                "SELECT type, COUNT(*) FROM memories WHERE cube_id = ? AND state = 'active' "
                "GROUP BY type",
                (cube,),
            )
        )
        sessions, first, last = self._read(
            "SELECT COUNT(DISTINCT session_id), MIN(COALESCE(occurred_at, created_at)), "
            "MAX(COALESCE(occurred_at, created_at)) FROM memories WHERE cube_id = ?",
            (cube,),
        )[0]
        return CubeStats(
            owner=owner,
            active=states.get("active", 0),
            archived=states.get("archived", 0),
            by_type=by_type,
            sessions=sessions,
            first_at=sql.from_iso(first),
            last_at=sql.from_iso(last),
        )

    def integrity_check(self) -> str:
        return self._read("PRAGMA integrity_check")[0][0]

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._snapshots.drop()
        self._closed = True


def _epoch_days(value: datetime) -> float:
    """Days since 1970-01-01 UTC (naive times are UTC, as stored)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.timestamp() / 86400.0


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _item(row: tuple[Any, ...]) -> MemoryItem:
    (
        _key,
        mid,
        mtype,
        state,
        text,
        metadata,
        user_id,
        agent_id,
        session_id,
        source_id,
        turn_index,
        role,
        name,
        occurred_at,
        source,
        version,
        created_at,
        updated_at,
        access_count,
        last_accessed_at,
        owner,
    ) = row
    return MemoryItem(
        id=mid,
        memory=text,
        type=mtype,
        state=MemoryState(state),
        metadata=json.loads(metadata),
        provenance=Provenance(
            owner=owner,
            user_id=user_id,
            agent_id=agent_id,
            session_id=session_id,
            source_id=source_id,
            turn_index=turn_index,
            role=role,
            name=name,
            timestamp=sql.from_iso(occurred_at),
            source=source,
        ),
        version=version,
        created_at=sql.from_iso(created_at),
        updated_at=sql.from_iso(updated_at),
        access_count=access_count,
        last_accessed_at=sql.from_iso(last_accessed_at),
    )
