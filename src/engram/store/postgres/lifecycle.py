"""The PostgreSQL store's feedback and retention methods (engram.lifecycle decides, these
read and write), mixed into PostgresStore, which provides the connection and cube plumbing."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engram.errors import CubeGoneError
from engram.store.base import RetentionPlan, RetentionRow
from engram.store.feedback import FeedbackEvent, FeedbackLog
from engram.store.postgres import feedback, memories, retention
from engram.store.postgres.conn import Database
from engram.store.postgres.snapshots import Snapshots


def _now() -> datetime:
    return datetime.now(UTC)


class LifecycleMethods:
    db: Database
    snapshots: Snapshots
    _feedback: dict[int, FeedbackLog]

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def owner_of(self, cube: int) -> str:
        raise NotImplementedError

    def _read(self, cube: int) -> Any:
        raise NotImplementedError

    def _write(
        self, cube: int, gone: type[Exception] = CubeGoneError
    ) -> AbstractContextManager[Any]:
        raise NotImplementedError

    # -- feedback ---------------------------------------------------------------------

    def add_feedback(
        self,
        cube: int,
        query: str,
        vector: np.ndarray,
        events: list[FeedbackEvent],
        weights: dict[str, float] | None,
    ) -> None:
        with self._write(cube) as (owner, cur):
            feedback.insert_feedback(cur, owner, cube, query, vector, events, weights, _now())

    def feedback(self, cube: int) -> FeedbackLog:
        owner = self.owner_of(cube)
        with self.db.tx(owner) as cur:
            rev = feedback.feedback_rev(cur, owner, cube)
        cached = self._feedback.get(cube)
        if cached is not None and cached.rev == rev:
            return cached
        with self.db.tx(owner, snapshot=True) as cur:
            log = feedback.read_feedback(cur, owner, cube, self.dim)
        self._feedback[cube] = log
        return log

    # -- retention (engram.lifecycle) -------------------------------------------------

    def retention_rows(
        self, cube: int, keys: list[int] | None = None, tiers: tuple[str, ...] = ()
    ) -> list[RetentionRow]:
        with self._read(cube) as cur:
            return retention.read_rows(cur, self.owner_of(cube), cube, keys, tiers, lock=False)

    def reinforce(
        self,
        cube: int,
        keys: list[int],
        strength: Callable[[RetentionRow], float],
        recalled: bool,
        at: datetime,
    ) -> list[RetentionRow]:
        owner = self.owner_of(cube)
        with self.db.tx(owner) as cur:
            return retention.reinforce(cur, owner, cube, keys, strength, recalled, at)

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
        owner = self.owner_of(cube)
        with self.db.tx(owner) as cur:
            return retention.set_retention(
                cur, owner, cube, keys, pinned, tier, reason, source, _now()
            )

    def apply_retention(self, cube: int, plan: RetentionPlan, source: str) -> RetentionPlan:
        if not self.owner_of(cube):
            return RetentionPlan(promote_strength=plan.promote_strength)
        with self._write(cube) as (owner, cur):
            done = retention.apply_plan(cur, owner, cube, plan, source, _now())
            if done.evict:
                old, new = memories.bump(cur, owner, cube)
        if done.evict:
            self.snapshots.removed(cube, old, new, sorted(done.evict))
        return done

    def expired(self, cube: int, at: datetime) -> list[int]:
        with self._read(cube) as cur:
            return retention.expired(cur, self.owner_of(cube), cube, at)

    def retention_policies(self, cube: int) -> dict[str, dict[str, Any]]:
        with self._read(cube) as cur:
            return retention.policies(cur, self.owner_of(cube), cube)

    def set_retention_policy(
        self, cube: int, memory_type: str, policy: dict[str, Any] | None
    ) -> None:
        with self._write(cube) as (owner, cur):
            retention.set_policy(cur, owner, cube, memory_type, policy, _now())
