"""`Memory.schedule`: plan one owner's moves between tiers, and queue them as jobs. Mixed
into Memory so memory.py stays small; the CLI (`engram tiers`) calls it, and AsyncMemory
wraps it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engram.errors import NotFoundError, ValidationError
from engram.lifecycle.api import utc
from engram.scheduler.core import Scheduler, plan_jobs
from engram.scheduler.move import SchedulePlan
from engram.scope import Scope, check_flag
from engram.timeutil import parse_time

if TYPE_CHECKING:
    from engram.config import EngramConfig
    from engram.cube import MemCube
    from engram.extract.jobs import Extraction
    from engram.lifecycle.core import Lifecycle
    from engram.store.base import Store
    from engram.text.access import AccessRecorder


class ScheduleVerbs:
    """Memory's scheduler verb; see docs/scheduler.md."""

    if TYPE_CHECKING:
        config: EngramConfig
        store: Store
        lifecycle: Lifecycle
        extraction: Extraction
        access: AccessRecorder | None

        def cube(self, scope: Scope, create: bool = False) -> MemCube | None: ...

    def schedule(
        self,
        user_id: str | None = None,
        *,
        agent_id: str | None = None,
        dry_run: bool = True,
        at: datetime | str | None = None,
    ) -> SchedulePlan:
        """Which of an owner's memories should move between tiers now, and why: hot ones
        to KV blocks within the byte budget (coldest blocks evicted), confirmed stable
        facts to the next adapter batch, weak cold ones to the archive (scheduler.policies).
        `dry_run=False` queues the moves as jobs (run by `engram worker`, `run_jobs()` or
        the extraction worker thread), never here; each move, once run, writes a version
        row into the memory's history. `at` plans as of another time."""
        dry_run = check_flag(dry_run, "dry_run")
        parsed = parse_time(at, "at")
        when = datetime.now(UTC) if parsed is None else utc(parsed)
        scope = Scope.of(user_id, agent_id)
        if scope.agent_filter is not None:
            raise ValidationError("the scheduler works on a whole owner: give user_id or agent_id")
        cube = self.cube(scope)
        if cube is None:
            raise NotFoundError(f"no memories for {scope.owner}")
        if self.access is not None:
            self.access.flush()  # search hits counted so far are part of the use
        plan = Scheduler(self.config.scheduler).plan(cube, self.lifecycle, when)
        if dry_run or not plan.moves:
            return plan.model_copy(update={"dry_run": dry_run})
        ids = [i for move in plan.moves for i in move.ids]
        keys = {}
        for memory_id in ids:
            found = self.store.locate(memory_id)
            if found is not None and found.cube == cube.id:
                keys[memory_id] = found.key
        jobs = plan_jobs(cube.id, plan, keys)
        queued = self.store.enqueue_jobs(jobs, self.config.extract.max_attempts)
        if queued and self.config.extract.worker == "thread":
            self.extraction.start_worker().wake()
        return plan.model_copy(update={"dry_run": False, "queued": queued})
