"""Provenance of tier artifacts in SQLite: which memories (and versions) each KV block and
adapter version was built from (table `tier_artifacts`, migration 0007)."""

from __future__ import annotations

import sqlite3
from typing import Any

from engram.store.base import ArtifactSource


def record(
    conn: sqlite3.Connection,
    tier: str,
    owner: str,
    artifact: str,
    sources: list[tuple[str, int]],
    now: str,
) -> None:
    conn.execute(
        "DELETE FROM tier_artifacts WHERE tier = ? AND owner = ? AND artifact = ?",
        (tier, owner, artifact),
    )
    conn.executemany(
        "INSERT OR REPLACE INTO tier_artifacts VALUES (?, ?, ?, ?, ?, ?)",
        [(tier, owner, artifact, mid, int(version), now) for mid, version in sources],
    )


def select(
    conn: sqlite3.Connection,
    tier: str | None,
    owner: str | None,
    memory_ids: list[str] | None,
) -> list[ArtifactSource]:
    where, params = [], []
    for column, value in (("tier", tier), ("owner", owner)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if memory_ids is not None:
        if not memory_ids:
            return []
        where.append(f"memory_id IN ({', '.join('?' * len(memory_ids))})")
        params.extend(memory_ids)
    query = (
        "SELECT tier, owner, artifact, memory_id, memory_version, created_at FROM tier_artifacts"
    )
    if where:
        query += " WHERE " + " AND ".join(where)
    rows: list[Any] = conn.execute(query + " ORDER BY tier, owner, artifact", params).fetchall()
    return [ArtifactSource(*row) for row in rows]


def forget(conn: sqlite3.Connection, tier: str, owner: str, artifact: str) -> None:
    conn.execute(
        "DELETE FROM tier_artifacts WHERE tier = ? AND owner = ? AND artifact = ?",
        (tier, owner, artifact),
    )
