"""The mounts table of the PostgreSQL store (migration 0004_mounts): which owners' cubes
an owner reads beside its own (engram.compose). Mixed into PostgresStore, which provides
`db`. A mount row is its reader's: row-level security by `owner`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Cursor

from engram.store.postgres.conn import Database


def drop_owner_mounts(cur: Cursor[Any], owner: str) -> None:
    """Inside an erasure of `owner`'s last memory: its mounts, and every other owner's
    mount of it. The rows naming it are other owners', so this one statement runs scoped to
    every owner; the transaction's own scope is put back after it."""
    cur.execute("SELECT set_config('engram.scope', 'all', true)")
    cur.execute("DELETE FROM mounts WHERE owner = %s OR cube = %s", (owner, owner))
    cur.execute("SELECT set_config('engram.scope', 'owner', true)")


class MountMethods:
    db: Database

    def mount(self, owner: str, cube: str, at: datetime) -> bool:
        with self.db.tx(owner) as cur:
            cur.execute(
                "INSERT INTO mounts (owner, cube, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (owner, cube) DO NOTHING",
                (owner, cube, at),
            )
            return cur.rowcount > 0

    def unmount(self, owner: str, cube: str) -> bool:
        with self.db.tx(owner) as cur:
            cur.execute("DELETE FROM mounts WHERE owner = %s AND cube = %s", (owner, cube))
            return cur.rowcount > 0

    def mounts(self, owner: str) -> list[tuple[str, datetime]]:
        with self.db.tx(owner) as cur:
            cur.execute(
                "SELECT cube, created_at FROM mounts WHERE owner = %s ORDER BY seq", (owner,)
            )
            return [(row[0], row[1]) for row in cur.fetchall()]
