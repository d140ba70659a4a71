"""SQLiteStore's queue-like tables: background jobs, REST idempotency keys, and the
provenance of tier artifacts (which memory versions each KV block and adapter was built
from). The SQL is in sqlite_jobs, sqlite_idempotency and sqlite_artifacts."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from engram.store import sqlite_artifacts, sqlite_idempotency, sqlite_jobs
from engram.store.base import ArtifactSource, IdempotencyRecord
from engram.store.jobs import Job, JobState, NewJob
from engram.store.sqlite_conn import ThreadConnections
from engram.timeutil import iso, utc_now


class QueueMixin:
    """Jobs, idempotency keys and artifact provenance of a SQLiteStore."""

    if TYPE_CHECKING:
        _conns: ThreadConnections
        _write_lock: threading.RLock

        def _conn(self) -> sqlite3.Connection: ...
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

    # -- jobs -------------------------------------------------------------------------

    def enqueue_jobs(self, jobs: list[NewJob], max_attempts: int) -> int:
        """Committed without an fsync of its own (synchronous=NORMAL for this one
        transaction): it follows every add, and a job row lost to a power cut is rebuilt
        by `engram jobs queue`; the next FULL commit makes it durable anyway."""
        if not jobs:
            return 0
        with self._write_lock:
            conn = self._conn()
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._write() as conn:
                    return sqlite_jobs.enqueue_jobs(conn, jobs, max_attempts, utc_now())
            finally:
                conn.execute(f"PRAGMA synchronous={self._conns.synchronous}")

    def claim_job(self, lease_s: float) -> Job | None:
        with self._write() as conn:
            return sqlite_jobs.claim_job(conn, datetime.now(UTC), lease_s)

    def finish_job(
        self,
        job: Job,
        state: JobState,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        retry_in_s: float = 0.0,
    ) -> None:
        now = datetime.now(UTC)
        with self._write() as conn:
            sqlite_jobs.finish_job(
                conn,
                list(job.ids),
                state,
                error,
                result,
                iso(now + timedelta(seconds=retry_in_s)),
                iso(now),
            )

    def jobs(self, cube: int | None, states: tuple[JobState, ...], limit: int) -> list[Job]:
        with self._reading() as conn:
            return sqlite_jobs.list_jobs(conn, cube, states, limit)

    def retry_jobs(self, cube: int | None, ids: list[int] | None) -> int:
        with self._write() as conn:
            return sqlite_jobs.retry_jobs(conn, cube, ids, utc_now())

    # -- idempotency keys -------------------------------------------------------------

    def claim_idempotency(
        self, owner: str, key: str, fingerprint: str, ttl_s: float, lease_s: float
    ) -> IdempotencyRecord | None:
        with self._write() as conn:
            return sqlite_idempotency.claim(
                conn, owner, key, fingerprint, datetime.now(UTC), ttl_s, lease_s
            )

    def finish_idempotency(self, owner: str, key: str, status: int, response: str) -> None:
        with self._write() as conn:
            sqlite_idempotency.finish(conn, owner, key, status, response)

    def release_idempotency(self, owner: str, key: str) -> None:
        with self._write() as conn:
            sqlite_idempotency.release(conn, owner, key)

    # -- provenance of tier artifacts -------------------------------------------------

    def record_artifact(
        self, tier: str, owner: str, artifact: str, sources: list[tuple[str, int]]
    ) -> None:
        with self._write() as conn:
            sqlite_artifacts.record(conn, tier, owner, artifact, sources, utc_now())

    def artifacts(
        self,
        tier: str | None = None,
        owner: str | None = None,
        memory_ids: list[str] | None = None,
    ) -> list[ArtifactSource]:
        with self._reading() as conn:
            return sqlite_artifacts.select(conn, tier, owner, memory_ids)

    def forget_artifact(self, tier: str, owner: str, artifact: str) -> None:
        with self._write() as conn:
            sqlite_artifacts.forget(conn, tier, owner, artifact)
