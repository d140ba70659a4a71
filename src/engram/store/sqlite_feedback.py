"""The feedback tables (migration 0003): SQL run inside the SQLite store's transactions,
and the store's feedback verbs."""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import numpy as np

from engram.errors import CubeGoneError, StoreError
from engram.store.feedback import FeedbackEvent, FeedbackLog
from engram.store.vector_index import decode_matrix, encode_vector
from engram.timeutil import utc_now


def insert_feedback(
    conn: sqlite3.Connection,
    cube: int,
    query: str,
    vector: np.ndarray,
    events: list[FeedbackEvent],
    weights: dict[str, float] | None,
    at: str,
) -> None:
    query_id = conn.execute(
        "INSERT INTO feedback_queries (cube_id, query, vector, at) VALUES (?, ?, ?, ?) "
        "RETURNING id",
        (cube, query, encode_vector(vector), at),
    ).fetchone()[0]
    conn.executemany(
        "INSERT INTO feedback (query_id, memory_key, label) VALUES (?, ?, ?)",
        [(query_id, e.key, e.label.value) for e in events],
    )
    if weights is not None:
        conn.execute(
            "INSERT INTO rerankers (cube_id, weights, events, updated_at) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (cube_id) DO UPDATE SET weights = excluded.weights, "
            "events = events + 1, updated_at = excluded.updated_at",
            (cube, json.dumps(weights), at),
        )
    conn.execute("UPDATE cubes SET feedback_rev = feedback_rev + 1 WHERE id = ?", (cube,))


def forget_feedback(conn: sqlite3.Connection, cube: int, keys: list[tuple[int]]) -> None:
    """Before memories are purged: their feedback rows, then queries left with none."""
    conn.executemany("DELETE FROM feedback WHERE memory_key = ?", keys)
    conn.execute(
        "DELETE FROM feedback_queries WHERE cube_id = ? AND NOT EXISTS "
        "(SELECT 1 FROM feedback f WHERE f.query_id = feedback_queries.id)",
        (cube,),
    )
    conn.execute("UPDATE cubes SET feedback_rev = feedback_rev + 1 WHERE id = ?", (cube,))


def drop_cube_feedback(conn: sqlite3.Connection, cube: int) -> None:
    conn.execute("DELETE FROM rerankers WHERE cube_id = ?", (cube,))
    conn.execute("DELETE FROM feedback_queries WHERE cube_id = ?", (cube,))


def feedback_rev(conn: sqlite3.Connection, cube: int) -> int:
    row = conn.execute("SELECT feedback_rev FROM cubes WHERE id = ?", (cube,)).fetchone()
    return row[0] if row else 0


def read_feedback(conn: sqlite3.Connection, cube: int, dim: int) -> FeedbackLog:
    """The whole log of a cube; call inside one read transaction."""
    rev = feedback_rev(conn, cube)
    queries = conn.execute(
        "SELECT id, query, vector FROM feedback_queries WHERE cube_id = ? ORDER BY id", (cube,)
    ).fetchall()
    index = {row[0]: i for i, row in enumerate(queries)}
    events = conn.execute(
        "SELECT f.query_id, f.memory_key, f.label FROM feedback f "
        "JOIN feedback_queries q ON q.id = f.query_id WHERE q.cube_id = ? "
        "ORDER BY f.query_id, f.memory_key",
        (cube,),
    ).fetchall()
    trained = conn.execute(
        "SELECT weights, events FROM rerankers WHERE cube_id = ?", (cube,)
    ).fetchone()
    log = FeedbackLog(
        rev=rev,
        queries=[row[1] for row in queries],
        vectors=decode_matrix([row[2] for row in queries], dim),
        query_of=np.array([index[row[0]] for row in events], dtype=np.int64),
        keys=np.array([row[1] for row in events], dtype=np.int64),
        labels=np.array([row[2] for row in events], dtype=object),
    )
    if trained is not None:
        log.weights = {str(k): float(v) for k, v in json.loads(trained[0]).items()}
        log.events_trained = int(trained[1])
    return log


class FeedbackMixin:
    """A SQLiteStore's feedback log, cached per cube until its revision changes."""

    if TYPE_CHECKING:
        _feedback: dict[int, FeedbackLog]
        _feedback_lock: threading.Lock

        def _conn(self) -> sqlite3.Connection: ...
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        @property
        def dim(self) -> int: ...

    def add_feedback(
        self,
        cube: int,
        query: str,
        vector: np.ndarray,
        events: list[FeedbackEvent],
        weights: dict[str, float] | None,
    ) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM cubes WHERE id = ?", (cube,)).fetchone() is None:
                raise CubeGoneError(f"cube {cube} no longer exists (its memories were erased)")
            insert_feedback(conn, cube, query, vector, events, weights, utc_now())

    def feedback(self, cube: int) -> FeedbackLog:
        conn = self._conn()
        rev = feedback_rev(conn, cube)
        with self._feedback_lock:
            cached = self._feedback.get(cube)
        if cached is not None and cached.rev == rev:
            return cached
        try:  # one read transaction: revision, queries and events agree
            conn.execute("BEGIN")
            log = read_feedback(conn, cube, self.dim)
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"read failed: {err}") from err
        with self._feedback_lock:
            self._feedback[cube] = log
        return log
