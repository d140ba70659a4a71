"""A job worker: a loop that claims and runs queued extraction jobs through the public
`Memory.run_jobs`, until it is stopped, the queue is drained (`once`) or `max_jobs` ran.

The store is the queue, so any number of workers in any processes may run against one
database: PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, SQLite under its write lock.
A claimed job holds a lease (`extract.lease_s`); a worker killed mid-job leaves it
`running` until the lease runs out, and then the next worker claims it again. Handlers are
idempotent (a job writes its whole plan in one transaction, and keyed derived memories
are updated, not added twice), so a job whose worker died is safe to run again.
`stop()` is safe from a signal handler: the job in hand finishes, then the loop ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engram.errors import StoreError, ValidationError
from engram.store.jobs import Job, JobState

if TYPE_CHECKING:
    from engram.memory import Memory

StopReason = Literal["drained", "max-jobs", "stopped"]


@dataclass(frozen=True)
class JobRun:
    """One job as the worker ran it: how it ended and the wall time it took."""

    job: Job
    seconds: float


@dataclass
class WorkerSummary:
    """What one `JobWorker.run` did, and why it ended."""

    jobs: int = 0
    done: int = 0
    failed: int = 0
    retrying: int = 0  # failed a run, queued again after its backoff
    store_errors: int = 0  # claims that met an unreachable store (retried after a poll)
    reason: StopReason = "stopped"

    def count(self, job: Job) -> None:
        self.jobs += 1
        if job.state is JobState.DONE:
            self.done += 1
        elif job.state is JobState.FAILED:
            self.failed += 1
        else:
            self.retrying += 1


def _check(poll_interval_s: float, max_jobs: int | None) -> None:
    if isinstance(poll_interval_s, bool) or not isinstance(poll_interval_s, int | float):
        raise ValidationError("poll interval must be a number of seconds")
    if not 0 < poll_interval_s <= 3600:
        raise ValidationError(
            f"poll interval must be more than 0 and at most 3600 seconds, got {poll_interval_s}"
        )
    if max_jobs is not None and (
        isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1
    ):
        raise ValidationError(f"max jobs must be a positive integer, got {max_jobs!r}")


class JobWorker:
    """Runs one Memory's queued jobs, one at a time, in the calling thread."""

    def __init__(
        self,
        memory: Memory,
        *,
        poll_interval_s: float = 1.0,
        max_jobs: int | None = None,
        once: bool = False,
    ) -> None:
        _check(poll_interval_s, max_jobs)
        self.memory = memory
        self.poll_interval_s = float(poll_interval_s)
        self.max_jobs = max_jobs
        self.once = once
        self._stop = threading.Event()

    def stop(self) -> None:
        """End the loop after the job in hand (safe from a signal handler or a thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(
        self,
        on_job: Callable[[JobRun], None] | None = None,
        on_store_error: Callable[[StoreError], None] | None = None,
    ) -> WorkerSummary:
        """Claim and run jobs until stopped, drained (`once`) or `max_jobs` ran. A store
        that cannot be reached is retried after the poll interval (`once`: raised)."""
        summary = WorkerSummary()
        while not self._stop.is_set():
            if self.max_jobs is not None and summary.jobs >= self.max_jobs:
                summary.reason = "max-jobs"
                break
            started = time.perf_counter()
            try:
                ran = self.memory.run_jobs(limit=1)
            except StoreError as err:
                if self.once:
                    raise
                summary.store_errors += 1
                if on_store_error is not None:
                    on_store_error(err)
                self._stop.wait(self.poll_interval_s)
                continue
            if ran:
                job = ran[0]
                summary.count(job)
                if on_job is not None:
                    on_job(JobRun(job, time.perf_counter() - started))
                continue
            if self.once:
                summary.reason = "drained"
                break
            self._stop.wait(self.poll_interval_s)
        return summary
