"""SQL for the jobs table (migration 0005), run inside the SQLite store's transactions."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta

from engram.store import columns
from engram.store.jobs import Job, JobState, NewJob
from engram.timeutil import from_iso, iso

_COLUMNS = (
    "j.id, j.cube_id, c.owner, j.session_key, j.extractor, j.input_hash, j.state, "
    "j.attempts, j.max_attempts, j.error, j.result, j.created_at, j.updated_at, j.payload"
)
_FROM = "jobs j JOIN cubes c ON c.id = j.cube_id"


def enqueue_jobs(conn: sqlite3.Connection, jobs: list[NewJob], max_attempts: int, now: str) -> int:
    """Queue jobs whose (cube, session, extractor, input hash) is new; returns how many."""
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO jobs (cube_id, session_key, extractor, input_hash, payload, "
        "max_attempts, not_before, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (
                j.cube,
                j.session_id or "",
                j.extractor,
                j.input_hash,
                json.dumps(j.payload, ensure_ascii=False),
                max_attempts,
                now,
                now,
                now,
            )
            for j in jobs
        ],
    )
    return conn.total_changes - before


def claim_job(conn: sqlite3.Connection, now: datetime, lease_s: float) -> Job | None:
    """Take the oldest runnable job and every queued job of the same (cube, session,
    extractor) with it; a running job whose lease ran out counts as runnable."""
    stamp = iso(now)
    while True:
        row = conn.execute(
            f"SELECT {_COLUMNS}, j.session_key FROM {_FROM} WHERE "
            "(j.state = 'queued' AND j.not_before <= ?) OR "
            "(j.state = 'running' AND j.lease_until < ?) ORDER BY j.id LIMIT 1",
            (stamp, stamp),
        ).fetchone()
        if row is None:
            return None
        if row[6] == JobState.RUNNING.value and row[7] >= row[8]:
            _set(conn, [row[0]], JobState.FAILED, "its worker stopped before it finished", stamp)
            continue  # a lost worker used up the last attempt
        break
    siblings = conn.execute(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE j.cube_id = ? AND j.session_key = ? AND "
        "j.extractor = ? AND j.state = 'queued' AND j.not_before <= ? AND j.id != ? "
        "ORDER BY j.id",
        (row[1], row[-1], row[4], stamp, row[0]),
    ).fetchall()
    ids = [row[0], *(s[0] for s in siblings)]
    lease = iso(now + timedelta(seconds=lease_s))
    conn.executemany(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = ?, "
        "updated_at = ? WHERE id = ?",
        [(lease, stamp, i) for i in ids],
    )
    first = _job(row[:-1], attempts=row[7] + 1, state=JobState.RUNNING)
    payloads = (first.payload, *(_job(s).payload for s in siblings))
    return replace(first, ids=tuple(ids), payloads=payloads)


def finish_job(
    conn: sqlite3.Connection,
    ids: list[int],
    state: JobState,
    error: str | None,
    result: dict[str, object] | None,
    not_before: str,
    now: str,
) -> None:
    conn.executemany(
        "UPDATE jobs SET state = ?, error = ?, result = ?, not_before = ?, lease_until = NULL, "
        "updated_at = ? WHERE id = ?",
        [
            (state.value, error, None if result is None else json.dumps(result), not_before, now, i)
            for i in ids
        ],
    )


def _set(conn: sqlite3.Connection, ids: list[int], state: JobState, error: str, now: str) -> None:
    finish_job(conn, ids, state, error, None, now, now)


def list_jobs(
    conn: sqlite3.Connection, cube: int | None, states: tuple[JobState, ...], limit: int
) -> list[Job]:
    where = ["1 = 1"]
    params: list[object] = []
    if cube is not None:
        where.append("j.cube_id = ?")
        params.append(cube)
    if states:
        where.append(f"j.state IN ({', '.join('?' for _ in states)})")
        params.extend(s.value for s in states)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE {' AND '.join(where)} ORDER BY j.id DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_job(row) for row in rows]


def retry_jobs(conn: sqlite3.Connection, cube: int | None, ids: list[int] | None, now: str) -> int:
    """Failed jobs (all, or those of `ids`) back to the queue with fresh attempts."""
    query = "UPDATE jobs SET state = 'queued', attempts = 0, not_before = ?, updated_at = ? "
    query += "WHERE state = 'failed'"
    params: list[object] = [now, now]
    if cube is not None:
        query += " AND cube_id = ?"
        params.append(cube)
    if ids is not None:
        if not ids:
            return 0
        query += f" AND id IN ({', '.join('?' for _ in ids)})"
        params.extend(ids)
    return conn.execute(query, params).rowcount


def _job(row: tuple, *, attempts: int | None = None, state: JobState | None = None) -> Job:
    return columns.job(row, from_iso, json.loads, attempts=attempts, state=state)
