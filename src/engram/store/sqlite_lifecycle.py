"""SQLiteStore's retention verbs (engram.lifecycle): strength, pinning, tiers, expiry and
per-owner policies. The SQL is in sqlite_retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engram.errors import CubeGoneError
from engram.store import sqlite_retention as retention
from engram.store.base import RetentionPlan, RetentionRow
from engram.store.vector_index import SnapshotCache
from engram.timeutil import utc_now


class RetentionMixin:
    """Retention state of a SQLiteStore's memories."""

    if TYPE_CHECKING:
        _snapshots: SnapshotCache

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _reading(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _bump(self, conn: sqlite3.Connection, cube: int) -> tuple[int, int]: ...

    # -- retention (engram.lifecycle) -------------------------------------------------

    def retention_rows(
        self, cube: int, keys: list[int] | None = None, tiers: tuple[str, ...] = ()
    ) -> list[RetentionRow]:
        with self._reading() as conn:
            return retention.read_rows(conn, cube, keys, tiers)

    def reinforce(
        self,
        cube: int,
        keys: list[int],
        strength: Callable[[RetentionRow], float],
        recalled: bool,
        at: datetime,
    ) -> list[RetentionRow]:
        with self._write() as conn:
            return retention.reinforce(conn, cube, keys, strength, recalled, at)

    def set_retention(
        self,
        cube: int,
        keys: list[int],
        *,
        pinned: bool | None = None,
        tier: str | None = None,
        reason: str | None = None,
        source: str | None = None,
    ) -> int:
        with self._write() as conn:
            return retention.set_retention(
                conn, cube, keys, pinned, tier, reason, source, utc_now()
            )

    def apply_retention(self, cube: int, plan: RetentionPlan, source: str) -> RetentionPlan:
        with self._write() as conn:
            done = retention.apply_plan(conn, cube, plan, source, utc_now())
            if done.evict:
                old, new = self._bump(conn, cube)
        if done.evict:
            self._snapshots.remove(cube, old, new, sorted(done.evict))
        return done

    def expired(self, cube: int, at: datetime) -> list[int]:
        with self._reading() as conn:
            return retention.expired(conn, cube, at)

    def retention_policies(self, cube: int) -> dict[str, dict[str, Any]]:
        with self._reading() as conn:
            return retention.policies(conn, cube)

    def set_retention_policy(
        self, cube: int, memory_type: str, policy: dict[str, Any] | None
    ) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM cubes WHERE id = ?", (cube,)).fetchone() is None:
                raise CubeGoneError(f"cube {cube} no longer exists (its memories were erased)")
            retention.set_policy(conn, cube, memory_type, policy, utc_now())
