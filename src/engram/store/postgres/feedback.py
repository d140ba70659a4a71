"""SQL for feedback (queries, their cited/used/wrong memories, each cube's reranker
weights), run on the caller's owner-scoped cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from psycopg import Cursor
from psycopg.types.json import Jsonb

from engram.store.feedback import FeedbackEvent, FeedbackLog
from engram.store.postgres.memories import as_array, stored_vector

Cur = Cursor[Any]


def insert_feedback(
    cur: Cur,
    owner: str,
    cube: int,
    query: str,
    vector: np.ndarray,
    events: list[FeedbackEvent],
    weights: dict[str, float] | None,
    at: datetime,
) -> None:
    cur.execute(
        "INSERT INTO feedback_queries (owner, cube_id, query, vector, at) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (owner, cube, query, stored_vector(vector), at),
    )
    query_id = cur.fetchone()[0]  # type: ignore[index]
    if events:
        cur.executemany(
            "INSERT INTO feedback (owner, query_id, memory_key, label) VALUES (%s, %s, %s, %s)",
            [(owner, query_id, e.key, e.label.value) for e in events],
        )
    if weights is not None:
        cur.execute(
            "INSERT INTO rerankers (owner, cube_id, weights, events, updated_at) "
            "VALUES (%s, %s, %s, 1, %s) ON CONFLICT (owner, cube_id) DO UPDATE SET "
            "weights = excluded.weights, events = rerankers.events + 1, "
            "updated_at = excluded.updated_at",
            (owner, cube, Jsonb(weights), at),
        )
    cur.execute(
        "UPDATE cubes SET feedback_rev = feedback_rev + 1 WHERE owner = %s AND id = %s",
        (owner, cube),
    )


def feedback_rev(cur: Cur, owner: str, cube: int) -> int:
    cur.execute("SELECT feedback_rev FROM cubes WHERE owner = %s AND id = %s", (owner, cube))
    row = cur.fetchone()
    return int(row[0]) if row else 0


def read_feedback(cur: Cur, owner: str, cube: int, dim: int) -> FeedbackLog:
    """The whole log of a cube; call inside one snapshot transaction."""
    rev = feedback_rev(cur, owner, cube)
    cur.execute(
        "SELECT id, query, vector FROM feedback_queries WHERE owner = %s AND cube_id = %s "
        "ORDER BY id",
        (owner, cube),
    )
    queries = cur.fetchall()
    index = {row[0]: i for i, row in enumerate(queries)}
    cur.execute(
        "SELECT f.query_id, f.memory_key, f.label FROM feedback f JOIN feedback_queries q "
        "ON q.owner = f.owner AND q.id = f.query_id WHERE f.owner = %s AND q.cube_id = %s "
        "ORDER BY f.query_id, f.memory_key",
        (owner, cube),
    )
    events = cur.fetchall()
    cur.execute(
        "SELECT weights, events FROM rerankers WHERE owner = %s AND cube_id = %s", (owner, cube)
    )
    trained = cur.fetchone()
    vectors = (
        np.stack([as_array(row[2]) for row in queries])
        if queries
        else np.zeros((0, dim), dtype=np.float32)
    )
    log = FeedbackLog(
        rev=rev,
        queries=[row[1] for row in queries],
        vectors=vectors,
        query_of=np.array([index[row[0]] for row in events], dtype=np.int64),
        keys=np.array([row[1] for row in events], dtype=np.int64),
        labels=np.array([row[2] for row in events], dtype=object),
    )
    if trained is not None:
        log.weights = {str(k): float(v) for k, v in trained[0].items()}
        log.events_trained = int(trained[1])
    return log
