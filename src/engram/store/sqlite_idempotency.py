"""Idempotency keys of writes (migration 0006_idempotency_keys): per owner and key, the
request's fingerprint, whether it is still running, and the response it produced.

A key is claimed in one transaction before the write runs (`claim`), marked done with its
response after it (`finish`), or released when the write failed (`release`), so a retry
runs again. Records expire `ttl` after they were claimed; a running record whose lease ran
out (its process died) may be claimed by a retry.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from engram.store.base import IdempotencyRecord
from engram.timeutil import iso


def claim(
    conn: sqlite3.Connection,
    owner: str,
    key: str,
    fingerprint: str,
    now: datetime,
    ttl_s: float,
    lease_s: float,
) -> IdempotencyRecord | None:
    """None when this call now holds the key; else the record that is already there."""
    stamp = iso(now)
    conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (stamp,))
    row = conn.execute(
        "SELECT fingerprint, state, status, response, started_at FROM idempotency_keys "
        "WHERE owner = ? AND key = ?",
        (owner, key),
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO idempotency_keys (owner, key, fingerprint, state, started_at, "
            "expires_at) VALUES (?, ?, ?, 'running', ?, ?)",
            (owner, key, fingerprint, stamp, iso(now + timedelta(seconds=ttl_s))),
        )
        return None
    record = IdempotencyRecord(row[0], row[1], row[2], row[3])
    abandoned = row[4] <= iso(now - timedelta(seconds=lease_s))
    if record.state == "running" and record.fingerprint == fingerprint and abandoned:
        conn.execute(
            "UPDATE idempotency_keys SET started_at = ? WHERE owner = ? AND key = ?",
            (stamp, owner, key),
        )
        return None
    return record


def finish(conn: sqlite3.Connection, owner: str, key: str, status: int, response: str) -> None:
    conn.execute(
        "UPDATE idempotency_keys SET state = 'done', status = ?, response = ? "
        "WHERE owner = ? AND key = ?",
        (status, response, owner, key),
    )


def release(conn: sqlite3.Connection, owner: str, key: str) -> None:
    conn.execute(
        "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND state = 'running'",
        (owner, key),
    )


def forget_cube_owner(conn: sqlite3.Connection, cube: int) -> None:
    """An erasure in a cube drops its owner's stored responses: they may quote the text."""
    conn.execute(
        "DELETE FROM idempotency_keys WHERE owner = (SELECT owner FROM cubes WHERE id = ?)",
        (cube,),
    )
