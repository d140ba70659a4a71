"""SQL for retention (strength, recalls, pinning, expiry, tiers, per-owner policy
overrides), run on the caller's owner-scoped cursor; same decisions as the SQLite store's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg import Cursor
from psycopg.types.json import Jsonb

from engram.store import columns
from engram.store.base import RetentionPlan, RetentionRow
from engram.store.postgres.memories import new_version, utc
from engram.types import MemoryState, VersionEvent

Cur = Cursor[Any]
TIERS = ("working", "episodic", "long_term")

_COLUMNS = (
    "key, id, type, state, tier, session_id, created_at, strength, last_recalled_at, "
    "recall_count, pinned, expires_at, metadata -> 'importance', access_count, last_accessed_at"
)


def _row(r: tuple[Any, ...]) -> RetentionRow:
    return columns.retention_row(r, utc)


def read_rows(
    cur: Cur, owner: str, cube: int, keys: list[int] | None, tiers: tuple[str, ...], lock: bool
) -> list[RetentionRow]:
    where = "owner = %s AND cube_id = %s"
    params: list[Any] = [owner, cube]
    if keys is None:
        where += " AND state = 'active'"
    else:
        where += " AND key = ANY(%s)"
        params.append(list(keys))
    if tiers:
        where += " AND tier = ANY(%s)"
        params.append(list(tiers))
    suffix = " FOR UPDATE" if lock else ""
    cur.execute(f"SELECT {_COLUMNS} FROM memories WHERE {where} ORDER BY key{suffix}", params)
    return [_row(r) for r in cur.fetchall()]


def _version(
    cur: Cur,
    owner: str,
    key: int,
    reason: str | None,
    source: str | None,
    now: datetime,
    event: VersionEvent = VersionEvent.UPDATE,
    state: MemoryState | None = None,
) -> None:
    """A version row for a retention change (text and metadata as they are)."""
    cur.execute(
        "UPDATE memories SET version = version + 1, updated_at = %s, "
        "state = COALESCE(%s, state) WHERE owner = %s AND key = %s "
        "RETURNING version, text, metadata",
        (now, None if state is None else state.value, owner, key),
    )
    version, text, metadata = cur.fetchone()  # type: ignore[misc]
    new_version(cur, owner, key, version, event, text, metadata, reason, source, now)


def reinforce(
    cur: Cur,
    owner: str,
    cube: int,
    keys: list[int],
    strength: Callable[[RetentionRow], float],
    recalled: bool,
    at: datetime,
) -> list[RetentionRow]:
    for row in read_rows(cur, owner, cube, keys, (), lock=True):
        if recalled:
            cur.execute(
                "UPDATE memories SET strength = %s, last_recalled_at = %s, "
                "recall_count = recall_count + 1 WHERE owner = %s AND key = %s",
                (strength(row), at, owner, row.key),
            )
        else:
            cur.execute(
                "UPDATE memories SET strength = %s WHERE owner = %s AND key = %s",
                (strength(row), owner, row.key),
            )
    return read_rows(cur, owner, cube, keys, (), lock=False)


def set_retention(
    cur: Cur,
    owner: str,
    cube: int,
    keys: list[int],
    pinned: bool | None,
    tier: str | None,
    reason: str | None,
    source: str | None,
    now: datetime,
) -> int:
    if tier is not None and tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}")
    changed = 0
    for row in read_rows(cur, owner, cube, keys, (), lock=True):
        if (pinned is None or row.pinned == pinned) and (tier is None or row.tier == tier):
            continue
        cur.execute(
            "UPDATE memories SET pinned = COALESCE(%s, pinned), tier = COALESCE(%s, tier) "
            "WHERE owner = %s AND key = %s",
            (pinned, tier, owner, row.key),
        )
        if reason is not None:
            _version(cur, owner, row.key, reason, source, now)
        changed += 1
    return changed


def apply_plan(
    cur: Cur, owner: str, cube: int, plan: RetentionPlan, source: str, now: datetime
) -> RetentionPlan:
    """One gc plan, re-checked row by row under row locks: only active memories change,
    and a memory pinned since the plan was made is not archived."""
    keys = sorted({*plan.displace, *plan.promote, *plan.evict})
    rows = {row.key: row for row in read_rows(cur, owner, cube, keys, (), lock=True)}
    live = {key for key, row in rows.items() if row.state is MemoryState.ACTIVE}
    displaced = tuple(k for k in plan.displace if k in live and rows[k].tier == "working")
    cur.execute(
        "UPDATE memories SET tier = 'episodic' WHERE owner = %s AND key = ANY(%s)",
        (owner, list(displaced)),
    )
    promoted = {k: why for k, why in plan.promote.items() if k in live}
    for key, reason in promoted.items():
        cur.execute(
            "UPDATE memories SET tier = 'long_term', "
            "strength = GREATEST(COALESCE(strength, 0), %s) WHERE owner = %s AND key = %s",
            (plan.promote_strength, owner, key),
        )
        _version(cur, owner, key, reason, source, now)
    evicted = {k: why for k, why in plan.evict.items() if k in live and not rows[k].pinned}
    for key, reason in evicted.items():
        _version(cur, owner, key, reason, source, now, VersionEvent.DELETE, MemoryState.ARCHIVED)
    return RetentionPlan(displaced, promoted, plan.promote_strength, evicted)


def expired(cur: Cur, owner: str, cube: int, at: datetime) -> list[int]:
    cur.execute(
        "SELECT key FROM memories WHERE owner = %s AND cube_id = %s AND expires_at IS NOT NULL "
        "AND expires_at <= %s AND state = 'active' AND NOT pinned ORDER BY key",
        (owner, cube, utc(at)),
    )
    return [r[0] for r in cur.fetchall()]


def policies(cur: Cur, owner: str, cube: int) -> dict[str, dict[str, Any]]:
    cur.execute(
        "SELECT type, policy FROM retention_policies WHERE owner = %s AND cube_id = %s",
        (owner, cube),
    )
    return {r[0]: r[1] for r in cur.fetchall()}


def set_policy(
    cur: Cur,
    owner: str,
    cube: int,
    memory_type: str,
    policy: dict[str, Any] | None,
    now: datetime,
) -> None:
    if policy is None:
        cur.execute(
            "DELETE FROM retention_policies WHERE owner = %s AND cube_id = %s AND type = %s",
            (owner, cube, memory_type),
        )
        return
    cur.execute(
        "INSERT INTO retention_policies (owner, cube_id, type, policy, updated_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (owner, cube_id, type) DO UPDATE SET "
        "policy = excluded.policy, updated_at = excluded.updated_at",
        (owner, cube, memory_type, Jsonb(policy), now),
    )
