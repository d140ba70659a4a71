"""Provenance of tier artifacts and idempotency keys of writes, on the caller's cursor
(same semantics as the SQLite store's sqlite_artifacts / sqlite_idempotency)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import Cursor

from engram.store.base import ArtifactSource, IdempotencyRecord
from engram.timeutil import iso

Cur = Cursor[Any]


def record(
    cur: Cur, tier: str, owner: str, artifact: str, sources: list[tuple[str, int]], now: datetime
) -> None:
    cur.execute(
        "DELETE FROM tier_artifacts WHERE owner = %s AND tier = %s AND artifact = %s",
        (owner, tier, artifact),
    )
    if sources:
        cur.executemany(
            "INSERT INTO tier_artifacts VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (owner, tier, artifact, memory_id) DO UPDATE SET "
            "memory_version = excluded.memory_version, created_at = excluded.created_at",
            [(owner, tier, artifact, mid, int(version), now) for mid, version in sources],
        )


def select(
    cur: Cur, tier: str | None, owner: str | None, memory_ids: list[str] | None
) -> list[ArtifactSource]:
    where: list[str] = ["true"]
    params: list[Any] = []
    for column, value in (("tier", tier), ("owner", owner)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if memory_ids is not None:
        if not memory_ids:
            return []
        where.append("memory_id = ANY(%s)")
        params.append(list(memory_ids))
    cur.execute(
        "SELECT tier, owner, artifact, memory_id, memory_version, created_at FROM tier_artifacts "
        f"WHERE {' AND '.join(where)} ORDER BY tier, owner, artifact, memory_id",
        params,
    )
    return [ArtifactSource(r[0], r[1], r[2], r[3], r[4], iso(r[5])) for r in cur.fetchall()]


def forget(cur: Cur, tier: str, owner: str, artifact: str) -> None:
    cur.execute(
        "DELETE FROM tier_artifacts WHERE owner = %s AND tier = %s AND artifact = %s",
        (owner, tier, artifact),
    )


def claim_idempotency(
    cur: Cur, owner: str, key: str, fingerprint: str, now: datetime, ttl_s: float, lease_s: float
) -> IdempotencyRecord | None:
    """None when this call now holds the key; else the record already there."""
    cur.execute("DELETE FROM idempotency_keys WHERE owner = %s AND expires_at <= %s", (owner, now))
    cur.execute(
        "INSERT INTO idempotency_keys (owner, key, fingerprint, state, started_at, expires_at) "
        "VALUES (%s, %s, %s, 'running', %s, %s) ON CONFLICT (owner, key) DO NOTHING",
        (owner, key, fingerprint, now, now + timedelta(seconds=ttl_s)),
    )
    if cur.rowcount:
        return None
    cur.execute(
        "SELECT fingerprint, state, status, response, started_at FROM idempotency_keys "
        "WHERE owner = %s AND key = %s FOR UPDATE",
        (owner, key),
    )
    row = cur.fetchone()
    if row is None:  # released meanwhile: take it
        return claim_idempotency(cur, owner, key, fingerprint, now, ttl_s, lease_s)
    found = IdempotencyRecord(row[0], row[1], row[2], row[3])
    abandoned = row[4] <= now - timedelta(seconds=lease_s)
    if found.state == "running" and found.fingerprint == fingerprint and abandoned:
        cur.execute(
            "UPDATE idempotency_keys SET started_at = %s WHERE owner = %s AND key = %s",
            (now, owner, key),
        )
        return None
    return found


def finish_idempotency(cur: Cur, owner: str, key: str, status: int, response: str) -> None:
    cur.execute(
        "UPDATE idempotency_keys SET state = 'done', status = %s, response = %s "
        "WHERE owner = %s AND key = %s",
        (status, response, owner, key),
    )


def release_idempotency(cur: Cur, owner: str, key: str) -> None:
    cur.execute(
        "DELETE FROM idempotency_keys WHERE owner = %s AND key = %s AND state = 'running'",
        (owner, key),
    )
