"""The embedded default store: SQLite in WAL mode, FTS5 for BM25, a numpy vector index.

One writer at a time (a process-wide lock plus `BEGIN IMMEDIATE` across processes),
readers concurrent, every multi-row change inside one transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engram.errors import CubeGoneError, EmbedderMismatchError, NotFoundError, StoreError
from engram.store import sql, sqlite_idempotency
from engram.store import sqlite_retention as retention
from engram.store.base import (
    Change,
    Located,
    MemoryFilter,
    NewMemory,
    Scored,
)
from engram.store.feedback import FeedbackLog
from engram.store.migrations import MIGRATIONS, apply_migrations
from engram.store.sqlite_conn import ThreadConnections, rollback, store_error
from engram.store.sqlite_feedback import (
    FeedbackMixin,
    drop_cube_feedback,
    forget_feedback,
)
from engram.store.sqlite_lifecycle import RetentionMixin
from engram.store.sqlite_mounts import MountsMixin, drop_owner_mounts
from engram.store.sqlite_queue import QueueMixin
from engram.store.sqlite_rows import cube_stats, history, item_from_row, items_by_keys, select_in
from engram.store.vector_index import (
    CubeSnapshot,
    SnapshotCache,
    SnapshotRow,
    build_snapshot,
    decode_matrix,
    encode_vector,
    top_k,
)
from engram.timeutil import iso, utc_now
from engram.types import CubeStats, MemoryItem, MemoryState, Version, VersionEvent

log = logging.getLogger(__name__)

_CHECKPOINT_TRIES = 3
_CHECKPOINT_BUSY_MS = 100


class SQLiteStore(QueueMixin, RetentionMixin, FeedbackMixin, MountsMixin):
    """Store protocol over one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        dim: int | None = None,
        synchronous: str = "FULL",
        busy_timeout_s: float = 30.0,
    ):
        """`dim=None`: the vector size is the one the store recorded with its embedder."""
        self.path = Path(path)
        self._dim = dim
        self._busy_timeout_s = busy_timeout_s
        self._conns = ThreadConnections(self.path, synchronous, busy_timeout_s)
        self._write_lock = threading.RLock()
        self._joined = False  # a transaction() is open (only its thread holds the lock)
        self._snapshots = SnapshotCache()
        self._feedback: dict[int, FeedbackLog] = {}
        self._feedback_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create store directory {self.path.parent}: {err}") from err
        self._migrate()

    @property
    def dim(self) -> int:
        """The vector size: as given, else as recorded by `check_embedder`."""
        if self._dim is None:
            rows = self._read("SELECT value FROM meta WHERE key = 'embedder.dim'")
            if not rows:
                raise StoreError(f"store {self.path} has no embedder recorded yet")
            self._dim = int(rows[0][0])
        return self._dim

    @property
    def open_connections(self) -> int:
        """Connections currently open (one per live thread that used the store)."""
        return self._conns.count()

    # -- connections and transactions -------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the store is closed")
        return self._conns.get()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits or none of it does. Inside
        `transaction()` it joins the open transaction instead."""
        with self._write_lock:
            conn = self._conn()
            if self._joined:
                yield conn
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self._error(err, "start a write transaction on") from err
            try:
                yield conn
            except sqlite3.Error as err:
                rollback(conn)
                raise self._error(err, "write (nothing was changed) to") from err
            except BaseException:
                rollback(conn)
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                rollback(conn)
                raise self._error(err, "commit to") from err

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group this thread's writes into one transaction: all commit or none does."""
        with self._write():
            self._joined = True
            try:
                yield
            except BaseException:
                self._snapshots.drop()  # writes inside patched cached snapshots; rolled back
                raise
            finally:
                self._joined = False

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, with driver errors translated."""
        conn = self._conn()
        try:
            yield conn
        except sqlite3.Error as err:
            raise self._error(err, "read") from err

    def _error(self, err: sqlite3.Error, doing: str) -> StoreError:
        return store_error(err, self.path, doing, self._busy_timeout_s)

    def _read(self, query: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._reading() as conn:
            return conn.execute(query, params).fetchall()

    def _migrate(self) -> None:
        """Apply pending migrations in one transaction. Foreign keys are off meanwhile
        (SQLite's table-rebuild procedure) and checked before the commit."""
        if self._migrated():
            return  # a read: opening never waits for another process's write lock
        with self._reading() as conn:
            conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with self._write() as conn:
                apply_migrations(conn, str(self.path), utc_now())
        finally:
            with self._reading() as conn:
                conn.execute("PRAGMA foreign_keys=ON")

    def _migrated(self) -> bool:
        """Whether every known migration, and no other, is applied already."""
        if not self._read("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"):
            return False
        applied = {row[0] for row in self._read("SELECT name FROM schema_migrations")}
        return applied == {name for name, _ in MIGRATIONS}

    # -- identity ---------------------------------------------------------------------

    def recorded_embedder(self) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = 'embedder.name'")
        return str(rows[0][0]) if rows else None

    def check_embedder(self, name: str, dim: int) -> None:
        query = "SELECT key, value FROM meta WHERE key LIKE 'embedder.%'"
        rows = dict(self._read(query))  # recorded already: no write lock needed
        if not rows:
            with self._write() as conn:
                rows = dict(conn.execute(query))
                if not rows:
                    conn.executemany(
                        "INSERT INTO meta VALUES (?, ?)",
                        [("embedder.name", name), ("embedder.dim", str(dim))],
                    )
                    if self._dim is None:
                        self._dim = dim
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
                "INSERT OR IGNORE INTO cubes (owner, created_at) VALUES (?, ?)", (owner, utc_now())
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
        now = utc_now()
        keys: list[int] = []
        new: list[tuple[int, np.ndarray, NewMemory]] = []
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM cubes WHERE id = ?", (cube,)).fetchone() is None:
                raise CubeGoneError(f"cube {cube} no longer exists (its memories were erased)")
            keys, new = self._insert_rows(conn, cube, rows, vectors, now)
            if new:
                old_rev, new_rev = self._bump(conn, cube)
            found = items_by_keys(conn, cube, keys)  # read before COMMIT: nothing can purge them
        if new:
            stored = _epoch_days(datetime.fromisoformat(now))
            # the vectors as stored (float16), so a patched snapshot scores exactly like one
            # reloaded from the database: scores depend on the cube's data, not on history
            kept = decode_matrix([encode_vector(vec) for _, vec, _ in new], self.dim)
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
                    for (key, _, r), vec in zip(new, kept, strict=True)
                ],
            )
        return [found[key] for key in keys]

    @staticmethod
    def _insert_rows(
        conn: sqlite3.Connection, cube: int, rows: list[NewMemory], vectors: np.ndarray, now: str
    ) -> tuple[list[int], list[tuple[int, np.ndarray, NewMemory]]]:
        """Insert the rows whose source id the cube does not hold (a source id repeated in
        `rows` is stored once) with keys allocated above every key ever used, in a few
        statements; every row's key, and the new (key, vector, row)s."""
        sources = [r.source_id for r in rows if r.source_id is not None]
        held: dict[str, int] = (
            dict(
                select_in(
                    conn,
                    "SELECT source_id, key FROM memories "
                    "WHERE cube_id = ? AND source_id IN ({marks})",
                    (cube,),
                    sources,
                )
            )
            if sources
            else {}
        )
        (top,) = conn.execute(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'memories'), 0), "
            "COALESCE((SELECT max(key) FROM memories), 0))"
        ).fetchone()
        keys: list[int] = []
        new: list[tuple[int, np.ndarray, NewMemory]] = []
        for row, vec in zip(rows, vectors, strict=True):
            key = held.get(row.source_id) if row.source_id is not None else None
            if key is None:
                key = top = top + 1
                new.append((key, vec, row))
                if row.source_id is not None:
                    held[row.source_id] = key
            keys.append(key)
        metadata = [json.dumps(r.metadata, ensure_ascii=False) for _, _, r in new]
        conn.executemany(
            "INSERT INTO memories (key, id, cube_id, type, text, metadata, user_id, agent_id, "
            "session_id, source_id, turn_index, role, name, occurred_at, source, created_at, "
            "updated_at, embedding, tier, expires_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (key, str(uuid.uuid4()), cube, r.type, r.text, meta, r.user_id, r.agent_id,
                 r.session_id, r.source_id, r.turn_index, r.role, r.name,
                 iso(r.occurred_at) if r.occurred_at else None, r.source, now, now,
                 encode_vector(vec), r.tier, None if r.expires_at is None else iso(r.expires_at))
                for (key, vec, r), meta in zip(new, metadata, strict=True)
            ],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO versions (memory_key, version, event, text, metadata, source, at) "
            "VALUES (?, 1, 'add', ?, ?, ?, ?)",
            [
                (key, r.text, meta, r.source, now)
                for (key, _, r), meta in zip(new, metadata, strict=True)
            ],
        )
        conn.executemany(
            "INSERT INTO memories_fts (rowid, body, cube) VALUES (?, ?, ?)",
            [(key, r.index_text, f"c{cube}") for key, _, r in new],
        )
        return keys, new

    def change(self, cube: int, key: int, change: Change) -> MemoryItem:
        now = utc_now()
        with self._write() as conn:
            row = conn.execute(
                "SELECT version, text, metadata, state FROM memories WHERE key = ? AND cube_id = ?",
                (key, cube),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"memory key {key} is not in cube {cube} (erased meanwhile?)")
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
            item = items_by_keys(conn, cube, [key])[key]  # read before COMMIT
        if change.vector is not None and active:
            self._snapshots.drop(cube)  # reloaded on the next search
        else:
            self._snapshots.remove(cube, old, new, [])
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
        now = utc_now()
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
                    "source, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, version, event.value, row[1], row[2], reason, source, now),
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
        """Erase rows, versions, index entries and vectors; a cube left empty goes too, so
        its owner id leaves the store. FTS5 keeps deleted tokens in its segments until they
        merge, so the index is optimized in the same transaction (a full merge: its cost
        grows with the whole index); with secure_delete on and the WAL checkpointed, no
        erased text stays in the files."""
        with self._write() as conn:
            query = "SELECT key FROM memories WHERE +cube_id = ? AND key IN ({marks})"
            found = [row[0] for row in select_in(conn, query, (cube,), keys)]
            if not found:
                return 0
            gone = [(key,) for key in found]
            forget_feedback(conn, cube, gone)
            sqlite_idempotency.forget_cube_owner(conn, cube)
            conn.executemany("DELETE FROM versions WHERE memory_key = ?", gone)
            conn.executemany("DELETE FROM memories_fts WHERE rowid = ?", gone)
            conn.executemany("DELETE FROM memories WHERE key = ?", gone)
            conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('optimize')")
            old, new = self._bump(conn, cube)
            emptied = (
                conn.execute("SELECT 1 FROM memories WHERE cube_id = ? LIMIT 1", (cube,)).fetchone()
                is None
            )
            if emptied:
                drop_cube_feedback(conn, cube)
                retention.drop_cube_retention(conn, cube)
                owner = conn.execute("SELECT owner FROM cubes WHERE id = ?", (cube,)).fetchone()
                drop_owner_mounts(conn, owner[0])
                conn.execute("DELETE FROM cubes WHERE id = ?", (cube,))
        self._snapshots.remove(cube, old, new, found)
        if emptied:
            self._snapshots.drop(cube)
        self._checkpoint()
        return len(found)

    def _checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it, so erased text leaves the WAL
        too. A reader still on an older snapshot keeps it busy: retried briefly, then left
        to a later checkpoint with a warning (the erasure itself has committed)."""
        try:
            with self._reading() as conn:
                conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_BUSY_MS}")
                try:
                    for attempt in range(_CHECKPOINT_TRIES):
                        if not conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                            return
                        time.sleep(0.05 * (attempt + 1))
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        except StoreError as err:
            log.warning("checkpoint of %s after an erasure failed: %s", self.path, err)
            return
        log.warning(
            "erased memories are gone from %s, but their text stays in its write-ahead log "
            "until the readers that started before the erasure finish; a later checkpoint "
            "removes it",
            self.path,
        )

    def record_access(self, cube: int, counts: dict[int, int], at: datetime) -> None:
        if not counts:
            return
        stamp = iso(at)
        with self._write() as conn:
            conn.executemany(
                "UPDATE memories SET access_count = access_count + ?, last_accessed_at = ? "
                "WHERE key = ? AND cube_id = ?",
                [(n, stamp, key, cube) for key, n in counts.items()],
            )

    # -- reads ------------------------------------------------------------------------

    def by_keys(self, cube: int, keys: list[int]) -> dict[int, MemoryItem]:
        with self._reading() as conn:
            return items_by_keys(conn, cube, keys)

    def keys(self, cube: int, flt: MemoryFilter) -> list[int]:
        query, params = sql.filtered_keys_sql(cube, flt)
        return [row[0] for row in self._read(query, params)]

    def known_sources(self, cube: int, source_ids: list[str]) -> set[str]:
        found: set[str] = set()
        with self._reading() as conn:
            for column in ("source_id", "id"):
                query = (
                    f"SELECT {column} FROM memories WHERE cube_id = ? AND {column} IN ({{marks}})"
                )
                found.update(row[0] for row in select_in(conn, query, (cube,), source_ids))
        return found

    def locate(self, memory_id: str) -> Located | None:
        rows = self._read(
            f"SELECT m.cube_id, m.key, c.owner FROM {sql.FROM_MEMORIES} WHERE m.id = ?",
            (memory_id,),
        )
        return Located(*rows[0]) if rows else None

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        # a range scan of the id index: [prefix, prefix with its last character + 1)
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._read(
            "SELECT id FROM memories WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, upper, limit),
        )
        return [row[0] for row in rows]

    def page(
        self, cube: int, flt: MemoryFilter, limit: int, after: int | None
    ) -> tuple[list[MemoryItem], int | None]:
        query, params = sql.page_sql(cube, flt, limit + 1, after)
        rows = self._read(query, params)
        items = [item_from_row(row) for row in rows[:limit]]
        next_key = rows[limit - 1][0] if len(rows) > limit else None
        return items, next_key

    def history(self, cube: int, key: int) -> list[Version]:
        with self._reading() as conn:
            return history(conn, cube, key)

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

    def vectors(self, cube: int, keys: list[int]) -> np.ndarray:
        query = "SELECT key, embedding FROM memories WHERE +cube_id = ? AND key IN ({marks})"
        with self._reading() as conn:
            found = dict(select_in(conn, query, (cube,), keys))
        return decode_matrix([found[k] for k in keys], self.dim)

    def stats(self, cube: int) -> CubeStats:
        with self._reading() as conn:
            stats = cube_stats(conn, cube)
        if stats is None:
            raise NotFoundError(f"cube {cube} no longer exists")
        return stats

    def integrity_check(self) -> str:
        return self._read("PRAGMA integrity_check")[0][0]

    def close(self) -> None:
        self._conns.close_all()
        self._snapshots.drop()
        self._closed = True


def _epoch_days(value: datetime) -> float:
    """Days since 1970-01-01 UTC (naive times are UTC, as stored)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.timestamp() / 86400.0
