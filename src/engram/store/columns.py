"""Rows -> Engram's value types, for every backend: the column order is the same in each
store; only how a time and a JSON value come out of its driver differs (SQLite: ISO text
and JSON text; PostgreSQL: datetimes and decoded JSONB), so each store passes its own
`when` and `js`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from engram.store.base import RetentionRow
from engram.store.jobs import Job, JobState
from engram.types import MemoryItem, MemoryState, Provenance

When = Callable[[Any], datetime | None]
Js = Callable[[Any], Any]


def _required(when: When, value: Any) -> datetime:
    found = when(value)
    assert found is not None  # NOT NULL columns
    return found


def memory_item(row: Sequence[Any], when: When, js: Js) -> MemoryItem:
    """One row of MEMORY_COLUMNS (key, id, type, state, text, metadata, user_id, agent_id,
    session_id, source_id, turn_index, role, name, occurred_at, source, version,
    created_at, updated_at, access_count, last_accessed_at, owner)."""
    (_key, mid, mtype, state, text, metadata, user_id, agent_id, session_id, source_id,
     turn_index, role, name, occurred_at, source, version, created_at, updated_at,
     access_count, last_accessed_at, owner) = row  # fmt: skip
    return MemoryItem(
        id=mid,
        memory=text,
        type=mtype,
        state=MemoryState(state),
        metadata=js(metadata),
        provenance=Provenance(
            owner=owner,
            user_id=user_id,
            agent_id=agent_id,
            session_id=session_id,
            source_id=source_id,
            turn_index=turn_index,
            role=role,
            name=name,
            timestamp=when(occurred_at),
            source=source,
        ),
        version=version,
        created_at=_required(when, created_at),
        updated_at=_required(when, updated_at),
        access_count=access_count,
        last_accessed_at=when(last_accessed_at),
    )


def retention_row(r: Sequence[Any], when: When) -> RetentionRow:
    """key, id, type, state, tier, session_id, created_at, strength, last_recalled_at,
    recall_count, pinned, expires_at, importance (metadata), access_count,
    last_accessed_at."""
    importance = r[12]
    number = isinstance(importance, int | float) and not isinstance(importance, bool)
    return RetentionRow(
        key=r[0],
        id=r[1],
        type=r[2],
        state=MemoryState(r[3]),
        tier=r[4],
        session_id=r[5],
        created_at=_required(when, r[6]),
        strength=r[7],
        last_recalled_at=when(r[8]),
        recall_count=r[9],
        pinned=bool(r[10]),
        expires_at=when(r[11]),
        importance=float(importance) if number else None,
        access_count=r[13],
        last_accessed_at=when(r[14]),
    )


def job(
    row: Sequence[Any],
    when: When,
    js: Js,
    *,
    attempts: int | None = None,
    state: JobState | None = None,
) -> Job:
    """id, cube, owner, session_id, extractor, input_hash, state, attempts, max_attempts,
    error, result, created_at, updated_at, payload."""
    payload = js(row[13])
    return Job(
        id=row[0],
        cube=row[1],
        owner=row[2],
        session_id=row[3] or None,
        extractor=row[4],
        input_hash=row[5],
        state=state or JobState(row[6]),
        attempts=row[7] if attempts is None else attempts,
        max_attempts=row[8],
        error=row[9],
        result=None if row[10] is None else js(row[10]),
        created_at=_required(when, row[11]),
        updated_at=_required(when, row[12]),
        payload=payload,
        ids=(row[0],),
        payloads=(payload,),
    )
