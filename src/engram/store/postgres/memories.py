"""SQL on memories and their versions, run on the caller's cursor inside one owner-scoped
transaction: every statement names the owner too (row-level security is the second lock,
not the only one)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, overload

import numpy as np
from psycopg import Cursor
from psycopg.types.json import Jsonb

from engram.store import columns
from engram.store.base import Change, NewMemory
from engram.store.postgres.mounts import drop_owner_mounts
from engram.store.postgres.sql import MEMORY_COLUMNS
from engram.types import CubeStats, MemoryItem, MemoryState, Version, VersionEvent

Cur = Cursor[Any]


def stored_vector(vector: np.ndarray) -> np.ndarray:
    """Rounded to float16 precision, as the SQLite store keeps vectors: both backends
    then score a cube identically."""
    return np.asarray(vector, dtype=np.float16).astype(np.float32)


def as_array(value: Any) -> np.ndarray:
    """A vector as read back (pgvector's Vector) as float32."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
@overload
def utc(value: datetime | None) -> datetime | None: ...
def utc(value: datetime | None) -> datetime | None:
    """A time as an aware UTC datetime (naive means UTC)."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def bump(cur: Cur, owner: str, cube: int) -> tuple[int, int]:
    """Advance the cube's revision (every write to its memories does, in its transaction)."""
    cur.execute(
        "UPDATE cubes SET rev = rev + 1 WHERE owner = %s AND id = %s RETURNING rev", (owner, cube)
    )
    new = cur.fetchone()[0]  # type: ignore[index]
    return new - 1, new


_INSERT = (
    "INSERT INTO memories (owner, id, cube_id, type, text, index_text, metadata, user_id, "
    "agent_id, session_id, source_id, turn_index, role, name, occurred_at, source, "
    "created_at, updated_at, tier, expires_at, embedding) "
    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
    "ON CONFLICT (owner, cube_id, source_id) WHERE source_id IS NOT NULL DO NOTHING "
    "RETURNING key"
)


def _params(owner: str, cube: int, row: NewMemory, vec: np.ndarray, now: datetime) -> tuple:
    return (
        owner,
        str(uuid.uuid4()),
        cube,
        row.type,
        row.text,
        row.index_text,
        Jsonb(row.metadata),
        row.user_id,
        row.agent_id,
        row.session_id,
        row.source_id,
        row.turn_index,
        row.role,
        row.name,
        utc(row.occurred_at),
        row.source,
        now,
        now,
        row.tier,
        utc(row.expires_at),
        stored_vector(vec),
    )


COPY_FROM = 64  # batches of at least this many rows go through COPY (see _copied)
_IN_COLUMNS = (
    "ord, id, type, text, index_text, metadata, user_id, agent_id, session_id, source_id, "
    "turn_index, role, name, occurred_at, source, tier, expires_at, embedding"
)
_IN_TYPES = [
    "int4", "text", "text", "text", "text", "jsonb", "text", "text", "text", "text",
    "int4", "text", "text", "timestamptz", "text", "text", "timestamptz", "vector",
]  # fmt: skip


def insert_many(
    cur: Cur, owner: str, cube: int, rows: Sequence[NewMemory], vecs: np.ndarray, now: datetime
) -> list[tuple[int, bool]]:
    """(key, whether it is new) per row, in order: a row whose source id the cube holds
    already (a concurrent writer's, or an earlier row's of this batch) is not written
    again. A few round trips per batch, not three per row."""
    if not rows:
        return []
    written = _copied(cur, owner, cube, rows, vecs, now) if len(rows) >= COPY_FROM else None
    if written is None:
        written = _pipelined(cur, owner, cube, rows, vecs, now)
    missing = [r.source_id for r, key in zip(rows, written, strict=True) if key is None]
    existing: dict[str, int] = {}
    if missing:
        cur.execute(
            "SELECT source_id, key FROM memories WHERE owner = %s AND cube_id = %s "
            "AND source_id = ANY(%s)",
            (owner, cube, missing),
        )
        existing = dict(cur.fetchall())
    return [
        (key, True) if key is not None else (existing[r.source_id], False)  # type: ignore[index]
        for r, key in zip(rows, written, strict=True)
    ]


def _pipelined(
    cur: Cur, owner: str, cube: int, rows: Sequence[NewMemory], vecs: np.ndarray, now: datetime
) -> list[int | None]:
    """One pipelined INSERT per row, then their versions; None for a row not written."""
    cur.executemany(
        _INSERT,
        [_params(owner, cube, row, vec, now) for row, vec in zip(rows, vecs, strict=True)],
        returning=True,
    )
    inserted: list[int | None] = []
    while True:
        found = cur.fetchone()
        inserted.append(None if found is None else int(found[0]))
        if not cur.nextset():
            break
    cur.executemany(
        "INSERT INTO versions (owner, memory_key, version, event, text, metadata, source, at) "
        "VALUES (%s, %s, 1, 'add', %s, %s, %s, %s)",
        [
            (owner, key, row.text, Jsonb(row.metadata), row.source, now)
            for row, key in zip(rows, inserted, strict=True)
            if key is not None
        ],
    )
    return inserted


def _copied(
    cur: Cur, owner: str, cube: int, rows: Sequence[NewMemory], vecs: np.ndarray, now: datetime
) -> list[int | None]:
    """A large batch: COPY (binary) into a temporary table, then one INSERT ... SELECT that
    writes the memories and their first versions. COPY cannot write a table under
    row-level security, a session's temporary table has none; the INSERT is checked."""
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS memories_in (ord int, id text, type text, text text, "
        "index_text text, metadata jsonb, user_id text, agent_id text, session_id text, "
        "source_id text, turn_index int, role text, name text, occurred_at timestamptz, "
        "source text, tier text, expires_at timestamptz, embedding vector) "
        "ON COMMIT DELETE ROWS"
    )
    ids = [str(uuid.uuid4()) for _ in rows]
    with cur.copy(f"COPY memories_in ({_IN_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_IN_TYPES)
        for i, (row, vec) in enumerate(zip(rows, vecs, strict=True)):
            copy.write_row(
                (i, ids[i], row.type, row.text, row.index_text, Jsonb(row.metadata),
                 row.user_id, row.agent_id, row.session_id, row.source_id, row.turn_index,
                 row.role, row.name, utc(row.occurred_at), row.source, row.tier,
                 utc(row.expires_at), stored_vector(vec))
            )  # fmt: skip
    cur.execute(
        "WITH ins AS (INSERT INTO memories (owner, cube_id, created_at, updated_at, id, type, "
        "text, index_text, metadata, user_id, agent_id, session_id, source_id, turn_index, "
        "role, name, occurred_at, source, tier, expires_at, embedding) "
        "SELECT %s, %s, %s, %s, id, type, text, index_text, metadata, user_id, agent_id, "
        "session_id, source_id, turn_index, role, name, occurred_at, source, tier, "
        "expires_at, embedding FROM memories_in ORDER BY ord "
        "ON CONFLICT (owner, cube_id, source_id) WHERE source_id IS NOT NULL DO NOTHING "
        "RETURNING key, id, text, metadata, source), "
        "v AS (INSERT INTO versions (owner, memory_key, version, event, text, metadata, "
        "source, at) SELECT %s, key, 1, 'add', text, metadata, source, %s FROM ins) "
        "SELECT id, key FROM ins",
        (owner, cube, now, now, owner, now),
    )
    keys = dict(cur.fetchall())
    cur.execute("TRUNCATE memories_in")  # joined transactions may copy again before COMMIT
    return [keys.get(i) for i in ids]


def change(cur: Cur, owner: str, cube: int, key: int, change: Change, now: datetime) -> bool | None:
    """Apply one new version; None when the memory is gone, else whether it is active."""
    cur.execute(
        "SELECT version, text, metadata, state FROM memories "
        "WHERE owner = %s AND cube_id = %s AND key = %s FOR UPDATE",
        (owner, cube, key),
    )
    row = cur.fetchone()
    if row is None:
        return None
    version = row[0] + 1
    text = row[1] if change.text is None else change.text
    metadata = row[2] if change.metadata is None else change.metadata
    cur.execute(
        "UPDATE memories SET text = %s, metadata = %s, version = %s, updated_at = %s "
        "WHERE owner = %s AND key = %s",
        (text, Jsonb(metadata), version, now, owner, key),
    )
    if change.vector is not None and change.index_text is not None:
        cur.execute(
            "UPDATE memories SET embedding = %s, index_text = %s WHERE owner = %s AND key = %s",
            (stored_vector(change.vector), change.index_text, owner, key),
        )
    new_version(
        cur, owner, key, version, change.event, text, metadata, change.reason, change.source, now
    )
    return bool(row[3] == MemoryState.ACTIVE.value)


def new_version(
    cur: Cur,
    owner: str,
    key: int,
    version: int,
    event: VersionEvent,
    text: str,
    metadata: dict[str, Any],
    reason: str | None,
    source: str | None,
    now: datetime,
) -> None:
    cur.execute(
        "INSERT INTO versions (owner, memory_key, version, event, text, metadata, reason, "
        "source, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (owner, key, version, event.value, text, Jsonb(metadata), reason, source, now),
    )


def set_state(
    cur: Cur,
    owner: str,
    cube: int,
    keys: list[int],
    state: MemoryState,
    event: VersionEvent,
    reason: str | None,
    source: str | None,
    now: datetime,
) -> list[int]:
    """Move memories to `state`, one version each; returns the keys that changed."""
    cur.execute(
        "SELECT key, version, text, metadata FROM memories WHERE owner = %s AND cube_id = %s "
        "AND key = ANY(%s) AND state <> %s ORDER BY key FOR UPDATE",
        (owner, cube, list(keys), state.value),
    )
    rows = {r[0]: r for r in cur.fetchall()}
    changed = [k for k in dict.fromkeys(keys) if k in rows]
    for key in changed:
        _, version, text, metadata = rows[key]
        cur.execute(
            "UPDATE memories SET state = %s, version = %s, updated_at = %s "
            "WHERE owner = %s AND key = %s",
            (state.value, version + 1, now, owner, key),
        )
        new_version(cur, owner, key, version + 1, event, text, metadata, reason, source, now)
    return changed


def purge(
    cur: Cur, owner: str, cube: int, keys: list[int]
) -> tuple[list[int], bool, tuple[int, int]]:
    """Delete memories with their versions and feedback (and queries left with none), and
    the owner's stored write responses; a cube left empty goes too. Returns (the keys
    deleted, whether the cube was emptied, its (old, new) revision)."""
    cur.execute(
        "DELETE FROM memories WHERE owner = %s AND cube_id = %s AND key = ANY(%s) RETURNING key",
        (owner, cube, list(keys)),
    )  # versions and feedback rows go by ON DELETE CASCADE
    found = sorted(r[0] for r in cur.fetchall())
    if not found:
        return [], False, (0, 0)
    cur.execute(
        "DELETE FROM feedback_queries q WHERE q.owner = %s AND q.cube_id = %s AND NOT EXISTS "
        "(SELECT 1 FROM feedback f WHERE f.owner = q.owner AND f.query_id = q.id)",
        (owner, cube),
    )
    cur.execute("DELETE FROM idempotency_keys WHERE owner = %s", (owner,))
    cur.execute(
        "UPDATE cubes SET feedback_rev = feedback_rev + 1 WHERE owner = %s AND id = %s",
        (owner, cube),
    )
    revs = bump(cur, owner, cube)
    cur.execute("SELECT 1 FROM memories WHERE owner = %s AND cube_id = %s LIMIT 1", (owner, cube))
    emptied = cur.fetchone() is None
    if emptied:  # feedback, rerankers, policies and jobs go by ON DELETE CASCADE
        drop_owner_mounts(cur, owner)
        cur.execute("DELETE FROM cubes WHERE owner = %s AND id = %s", (owner, cube))
    return found, emptied, revs


def items_by_keys(cur: Cur, owner: str, cube: int, keys: Sequence[int]) -> dict[int, MemoryItem]:
    cur.execute(
        f"SELECT {MEMORY_COLUMNS} FROM memories m "
        "WHERE m.owner = %s AND m.cube_id = %s AND m.key = ANY(%s)",
        (owner, cube, list(dict.fromkeys(keys))),
    )
    return {row[0]: item_from_row(row) for row in cur.fetchall()}


def decoded(value: Any) -> Any:
    """JSONB arrives decoded."""
    return value


def item_from_row(row: Sequence[Any]) -> MemoryItem:
    """One row of `MEMORY_COLUMNS` as a MemoryItem."""
    return columns.memory_item(row, utc, decoded)


def history(cur: Cur, owner: str, cube: int, key: int) -> list[Version]:
    cur.execute(
        "SELECT v.version, v.event, v.text, v.metadata, v.reason, v.source, v.at "
        "FROM versions v JOIN memories m ON m.owner = v.owner AND m.key = v.memory_key "
        "WHERE v.owner = %s AND m.cube_id = %s AND v.memory_key = %s ORDER BY v.version",
        (owner, cube, key),
    )
    return [
        Version(
            version=r[0],
            event=VersionEvent(r[1]),
            memory=r[2],
            metadata=r[3],
            reason=r[4],
            source=r[5],
            at=utc(r[6]),
        )
        for r in cur.fetchall()
    ]


def cube_stats(cur: Cur, owner: str, cube: int) -> CubeStats | None:
    cur.execute("SELECT owner FROM cubes WHERE owner = %s AND id = %s", (owner, cube))
    if cur.fetchone() is None:
        return None
    cur.execute(
        "SELECT state, COUNT(*) FROM memories WHERE owner = %s AND cube_id = %s GROUP BY state",
        (owner, cube),
    )
    states = dict(cur.fetchall())
    cur.execute(
        "SELECT type, COUNT(*) FROM memories WHERE owner = %s AND cube_id = %s "
        "AND state = 'active' GROUP BY type",
        (owner, cube),
    )
    by_type = dict(cur.fetchall())
    cur.execute(
        "SELECT COUNT(DISTINCT session_id), MIN(COALESCE(occurred_at, created_at)), "
        "MAX(COALESCE(occurred_at, created_at)) FROM memories WHERE owner = %s AND cube_id = %s",
        (owner, cube),
    )
    sessions, first, last = cur.fetchone()  # type: ignore[misc]
    return CubeStats(
        owner=owner,
        active=states.get("active", 0),
        archived=states.get("archived", 0),
        by_type=by_type,
        sessions=sessions,
        first_at=utc(first),
        last_at=utc(last),
    )


def record_access(cur: Cur, owner: str, cube: int, counts: dict[int, int], at: datetime) -> None:
    cur.execute(
        "UPDATE memories m SET access_count = m.access_count + u.n, last_accessed_at = %s "
        "FROM unnest(%s::bigint[], %s::bigint[]) AS u(key, n) "
        "WHERE m.owner = %s AND m.cube_id = %s AND m.key = u.key",
        (at, list(counts), list(counts.values()), owner, cube),
    )
