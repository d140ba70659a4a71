"""The extraction verbs of `Memory` (jobs, run_jobs, retry_jobs, extract): validation at
the public boundary, then delegation to the job system. Mixed into Memory so memory.py
stays small; AsyncMemory wraps them like every verb."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from engram.errors import ValidationError
from engram.scope import Scope
from engram.store.base import MemoryFilter
from engram.store.jobs import Job, JobState
from engram.types import MemoryType

if TYPE_CHECKING:
    from engram.cube import MemCube
    from engram.extract.jobs import Extraction
    from engram.store.base import Store


def _states(state: str | JobState | Iterable[str | JobState] | None) -> tuple[JobState, ...]:
    if state is None:
        return ()
    raw = [state] if isinstance(state, str | JobState) else list(state)
    try:
        return tuple(JobState(s) for s in raw)
    except ValueError as err:
        known = ", ".join(s.value for s in JobState)
        raise ValidationError(f"unknown job state in {raw!r}; known: {known}") from err


def _limit(limit: int, name: str = "limit") -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise ValidationError(f"{name} must be an integer from 1 to 10000")
    return limit


class ExtractionVerbs:
    """Memory's extraction verbs; see docs/extraction.md."""

    if TYPE_CHECKING:
        extraction: Extraction
        store: Store

        def cube(self, scope: Scope, create: bool = False) -> MemCube | None: ...

    def _job_cube(self, user_id: str | None, agent_id: str | None) -> int | None:
        """None: every owner; -1: an owner without a cube (no jobs)."""
        scope = Scope.of(user_id, agent_id, required=False)
        if scope.owner is None:
            return None
        cube = self.cube(scope)
        return -1 if cube is None else cube.id

    def jobs(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        state: str | JobState | Iterable[str | JobState] | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Extraction jobs, newest first (of one owner, or all): state, attempts, error,
        result."""
        cube = self._job_cube(user_id, agent_id)
        if cube == -1:
            return []
        return self.store.jobs(cube, _states(state), _limit(limit))

    def run_jobs(self, *, limit: int | None = None) -> list[Job]:
        """Run queued extraction jobs now, in this thread, until none is runnable (or
        `limit` ran); returns each job as it ended (done, failed, or queued for a retry)."""
        return self.extraction.run_pending(None if limit is None else _limit(limit))

    def retry_jobs(
        self,
        ids: Iterable[int] | None = None,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> int:
        """Queue failed jobs again with fresh attempts (all of the owner's, or `ids`)."""
        chosen = None
        if ids is not None:
            chosen = list(ids)
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
                raise ValidationError("job ids must be integers")
        cube = self._job_cube(user_id, agent_id)
        return 0 if cube == -1 else self.store.retry_jobs(cube, chosen)

    def extract(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
    ) -> int:
        """Queue extraction over an owner's stored turns (e.g. ones added while
        `extract.enqueue` was off); returns how many jobs are new."""
        scope = Scope.of(user_id, agent_id, session_id)
        cube = self.cube(scope)
        if cube is None:
            return 0
        flt = MemoryFilter(types=(MemoryType.TURN.value,), session_id=scope.session_id)
        keys = self.store.keys(cube.id, flt)
        items = self.store.by_keys(cube.id, keys)
        return self.extraction.queue(items[k] for k in keys if k in items)
