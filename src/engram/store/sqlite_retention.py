"""SQL for retention (migration 0004): strength, recalls, pinning, expiry, tiers and
per-owner policy overrides. Every function runs on the caller's connection, inside the
SQLite store's transactions; user values only travel as bound parameters."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from engram.store import columns
from engram.store.base import RetentionPlan, RetentionRow
from engram.store.sqlite_rows import select_in
from engram.timeutil import from_iso, iso
from engram.types import MemoryState, VersionEvent

TIERS = ("working", "episodic", "long_term")

_COLUMNS = (
    "key, id, type, state, tier, session_id, created_at, strength, last_recalled_at, "
    "recall_count, pinned, expires_at, json_extract(metadata, '$.importance'), "
    "access_count, last_accessed_at"
)


def _row(r: tuple[Any, ...]) -> RetentionRow:
    return columns.retention_row(r, from_iso)


def read_rows(
    conn: sqlite3.Connection, cube: int, keys: list[int] | None, tiers: tuple[str, ...]
) -> list[RetentionRow]:
    tier_clause = f" AND tier IN ({', '.join('?' for _ in tiers)})" if tiers else ""
    if keys is None:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE cube_id = ? AND state = 'active'"
            f"{tier_clause} ORDER BY key",
            (cube, *tiers),
        ).fetchall()
    else:
        query = f"SELECT {_COLUMNS} FROM memories WHERE cube_id = ? AND key IN ({{marks}})"
        rows = [r for r in select_in(conn, query, (cube,), keys) if not tiers or r[4] in tiers]
        rows.sort(key=lambda r: r[0])
    return [_row(r) for r in rows]


def _new_version(
    conn: sqlite3.Connection,
    key: int,
    reason: str | None,
    source: str | None,
    now: str,
    event: VersionEvent = VersionEvent.UPDATE,
    state: MemoryState | None = None,
) -> None:
    """A version row for a retention change (text and metadata as they are)."""
    version, text, metadata = conn.execute(
        "SELECT version + 1, text, metadata FROM memories WHERE key = ?", (key,)
    ).fetchone()
    conn.execute(
        "UPDATE memories SET version = ?, updated_at = ?, state = COALESCE(?, state) WHERE key = ?",
        (version, now, None if state is None else state.value, key),
    )
    conn.execute(
        "INSERT INTO versions (memory_key, version, event, text, metadata, reason, source, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (key, version, event.value, text, metadata, reason, source, now),
    )


def reinforce(
    conn: sqlite3.Connection,
    cube: int,
    keys: list[int],
    strength: Callable[[RetentionRow], float],
    recalled: bool,
    at: datetime,
) -> list[RetentionRow]:
    stamp = iso(at)
    for row in read_rows(conn, cube, keys, ()):
        if recalled:
            conn.execute(
                "UPDATE memories SET strength = ?, last_recalled_at = ?, "
                "recall_count = recall_count + 1 WHERE key = ?",
                (strength(row), stamp, row.key),
            )
        else:
            conn.execute("UPDATE memories SET strength = ? WHERE key = ?", (strength(row), row.key))
    return read_rows(conn, cube, keys, ())


def set_retention(
    conn: sqlite3.Connection,
    cube: int,
    keys: list[int],
    pinned: bool | None,
    tier: str | None,
    reason: str | None,
    source: str | None,
    now: str,
) -> int:
    if tier is not None and tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}")
    changed = 0
    for row in read_rows(conn, cube, keys, ()):
        same_pin = pinned is None or row.pinned == pinned
        same_tier = tier is None or row.tier == tier
        if same_pin and same_tier:
            continue
        conn.execute(
            "UPDATE memories SET pinned = COALESCE(?, pinned), tier = COALESCE(?, tier) "
            "WHERE key = ?",
            (None if pinned is None else int(pinned), tier, row.key),
        )
        if reason is not None:
            _new_version(conn, row.key, reason, source, now)
        changed += 1
    return changed


def apply_plan(
    conn: sqlite3.Connection, cube: int, plan: RetentionPlan, source: str, now: str
) -> RetentionPlan:
    """One gc plan, re-checked row by row: only active memories change, and a memory
    pinned since the plan was made is not archived."""
    keys = sorted({*plan.displace, *plan.promote, *plan.evict})
    rows = {row.key: row for row in read_rows(conn, cube, keys, ())}
    live = {key for key, row in rows.items() if row.state is MemoryState.ACTIVE}
    displaced = tuple(k for k in plan.displace if k in live and rows[k].tier == "working")
    conn.executemany(
        "UPDATE memories SET tier = 'episodic' WHERE key = ?", [(k,) for k in displaced]
    )
    promoted = {k: why for k, why in plan.promote.items() if k in live}
    for key, reason in promoted.items():
        conn.execute(
            "UPDATE memories SET tier = 'long_term', strength = MAX(COALESCE(strength, 0), ?) "
            "WHERE key = ?",
            (plan.promote_strength, key),
        )
        _new_version(conn, key, reason, source, now)
    evicted = {k: why for k, why in plan.evict.items() if k in live and not rows[k].pinned}
    for key, reason in evicted.items():
        _new_version(
            conn,
            key,
            reason,
            source,
            now,
            event=VersionEvent.DELETE,
            state=MemoryState.ARCHIVED,
        )
    return RetentionPlan(displaced, promoted, plan.promote_strength, evicted)


def expired(conn: sqlite3.Connection, cube: int, at: datetime) -> list[int]:
    rows = conn.execute(
        "SELECT key FROM memories WHERE cube_id = ? AND expires_at IS NOT NULL "
        "AND expires_at <= ? AND state = 'active' AND pinned = 0 ORDER BY key",
        (cube, iso(at)),
    ).fetchall()
    return [r[0] for r in rows]


def policies(conn: sqlite3.Connection, cube: int) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT type, policy FROM retention_policies WHERE cube_id = ?", (cube,)
    ).fetchall()
    return {r[0]: json.loads(r[1]) for r in rows}


def set_policy(
    conn: sqlite3.Connection,
    cube: int,
    memory_type: str,
    policy: dict[str, Any] | None,
    now: str,
) -> None:
    if policy is None:
        conn.execute(
            "DELETE FROM retention_policies WHERE cube_id = ? AND type = ?", (cube, memory_type)
        )
        return
    conn.execute(
        "INSERT INTO retention_policies (cube_id, type, policy, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (cube_id, type) DO UPDATE SET policy = excluded.policy, "
        "updated_at = excluded.updated_at",
        (cube, memory_type, json.dumps(policy), now),
    )


def drop_cube_retention(conn: sqlite3.Connection, cube: int) -> None:
    """Before an emptied cube is deleted: its policy overrides."""
    conn.execute("DELETE FROM retention_policies WHERE cube_id = ?", (cube,))
