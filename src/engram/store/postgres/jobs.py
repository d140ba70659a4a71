"""The job queue in PostgreSQL: many workers in many processes claim with
`FOR UPDATE SKIP LOCKED`, so no two take the same job and none waits on another's claim."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import Cursor
from psycopg.types.json import Jsonb

from engram.store import columns
from engram.store.jobs import Job, JobState, NewJob
from engram.store.postgres.memories import decoded, utc

Cur = Cursor[Any]

_COLUMNS = (
    "j.id, j.cube_id, j.owner, j.session_key, j.extractor, j.input_hash, j.state, "
    "j.attempts, j.max_attempts, j.error, j.result, j.created_at, j.updated_at, j.payload"
)


def enqueue_jobs(
    cur: Cur, owners: dict[int, str], jobs: list[NewJob], max_attempts: int, now: datetime
) -> int:
    """Queue jobs whose (cube, session, extractor, input hash) is new; returns how many.
    `owners`: the owner of each job's cube (jobs of erased cubes are dropped)."""
    added = 0
    for j in jobs:
        if j.cube not in owners:
            continue
        cur.execute(
            "INSERT INTO jobs (owner, cube_id, session_key, extractor, input_hash, payload, "
            "max_attempts, not_before, created_at, updated_at) "
            "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s "
            "WHERE EXISTS (SELECT 1 FROM cubes WHERE owner = %s AND id = %s) "
            "ON CONFLICT DO NOTHING",
            (
                owners[j.cube],
                j.cube,
                j.session_id or "",
                j.extractor,
                j.input_hash,
                Jsonb(j.payload),
                max_attempts,
                now,
                now,
                now,
                owners[j.cube],
                j.cube,
            ),
        )
        added += cur.rowcount
    return added


def claim_job(cur: Cur, now: datetime, lease_s: float) -> Job | None:
    """Take the oldest runnable job and every queued job of the same (cube, session,
    extractor) with it; a running job whose lease ran out counts as runnable. Rows
    another worker is claiming right now are skipped, not waited for."""
    while True:
        cur.execute(
            f"SELECT {_COLUMNS} FROM jobs j WHERE "
            "(j.state = 'queued' AND j.not_before <= %s) OR "
            "(j.state = 'running' AND j.lease_until < %s) "
            "ORDER BY j.id LIMIT 1 FOR UPDATE SKIP LOCKED",
            (now, now),
        )
        row = cur.fetchone()
        if row is None:
            return None
        if row[6] == JobState.RUNNING.value and row[7] >= row[8]:
            lost = "its worker stopped before it finished"
            finish_job(cur, row[2], [row[0]], JobState.FAILED, lost, None, now, now)
            continue  # a lost worker used up the last attempt
        break
    cur.execute(
        f"SELECT {_COLUMNS} FROM jobs j WHERE j.owner = %s AND j.cube_id = %s AND "
        "j.session_key = %s AND j.extractor = %s AND j.state = 'queued' AND "
        "j.not_before <= %s AND j.id <> %s ORDER BY j.id FOR UPDATE SKIP LOCKED",
        (row[2], row[1], row[3], row[4], now, row[0]),
    )
    siblings = cur.fetchall()
    ids = [row[0], *(s[0] for s in siblings)]
    cur.execute(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = %s, "
        "updated_at = %s WHERE owner = %s AND id = ANY(%s)",
        (now + timedelta(seconds=lease_s), now, row[2], ids),
    )
    first = _job(row, attempts=row[7] + 1, state=JobState.RUNNING)
    payloads = (first.payload, *(_job(s).payload for s in siblings))
    return replace(first, ids=tuple(ids), payloads=payloads)


def finish_job(
    cur: Cur,
    owner: str,
    ids: list[int],
    state: JobState,
    error: str | None,
    result: dict[str, Any] | None,
    not_before: datetime,
    now: datetime,
) -> None:
    cur.execute(
        "UPDATE jobs SET state = %s, error = %s, result = %s, not_before = %s, "
        "lease_until = NULL, updated_at = %s WHERE owner = %s AND id = ANY(%s)",
        (
            state.value,
            error,
            None if result is None else Jsonb(result),
            not_before,
            now,
            owner,
            ids,
        ),
    )


def list_jobs(
    cur: Cur, owner: str | None, cube: int | None, states: tuple[JobState, ...], limit: int
) -> list[Job]:
    where: list[str] = ["true"]
    params: list[Any] = []
    if cube is not None:
        where.append("j.owner = %s AND j.cube_id = %s")
        params += [owner, cube]
    if states:
        where.append("j.state = ANY(%s)")
        params.append([s.value for s in states])
    cur.execute(
        f"SELECT {_COLUMNS} FROM jobs j WHERE {' AND '.join(where)} ORDER BY j.id DESC LIMIT %s",
        (*params, limit),
    )
    return [_job(row) for row in cur.fetchall()]


def retry_jobs(
    cur: Cur, owner: str | None, cube: int | None, ids: list[int] | None, now: datetime
) -> int:
    """Failed jobs (all, or those of `ids`) back to the queue with fresh attempts."""
    query = "UPDATE jobs SET state = 'queued', attempts = 0, not_before = %s, updated_at = %s "
    query += "WHERE state = 'failed'"
    params: list[Any] = [now, now]
    if cube is not None:
        query += " AND owner = %s AND cube_id = %s"
        params += [owner, cube]
    if ids is not None:
        if not ids:
            return 0
        query += " AND id = ANY(%s)"
        params.append(list(ids))
    cur.execute(query, params)
    return cur.rowcount


def _job(row: Any, *, attempts: int | None = None, state: JobState | None = None) -> Job:
    return columns.job(row, utc, decoded, attempts=attempts, state=state)
