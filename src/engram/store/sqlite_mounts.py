"""The mounts table of the SQLite store (migration 0008): which owners' cubes an owner
reads beside its own (engram.compose)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engram.timeutil import from_iso, iso


def drop_owner_mounts(conn: sqlite3.Connection, owner: str) -> None:
    """Inside an erasure of `owner`'s last memory: its mounts, and every mount of it."""
    conn.execute("DELETE FROM mounts WHERE owner = ? OR cube = ?", (owner, owner))


class MountsMixin:
    """The Store's mount verbs over SQLite."""

    if TYPE_CHECKING:

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _read(
            self, query: str, params: list[Any] | tuple[Any, ...] = ()
        ) -> list[tuple[Any, ...]]: ...

    def mount(self, owner: str, cube: str, at: datetime) -> bool:
        with self._write() as conn:
            done = conn.execute(
                "INSERT INTO mounts (owner, cube, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (owner, cube) DO NOTHING",
                (owner, cube, iso(at)),
            )
            return done.rowcount > 0

    def unmount(self, owner: str, cube: str) -> bool:
        with self._write() as conn:
            done = conn.execute("DELETE FROM mounts WHERE owner = ? AND cube = ?", (owner, cube))
            return done.rowcount > 0

    def mounts(self, owner: str) -> list[tuple[str, datetime]]:
        rows = self._read(
            "SELECT cube, created_at FROM mounts WHERE owner = ? ORDER BY created_at, rowid",
            (owner,),
        )
        return [(cube, from_iso(at)) for cube, at in rows]
