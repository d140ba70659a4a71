"""The PostgreSQL store's cross-owner services: the job queue (claimed with
`FOR UPDATE SKIP LOCKED` by workers in any process), idempotency keys of writes, and the
provenance of tier artifacts. Mixed into PostgresStore, which provides `db` and `owner_of`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engram.store.base import ArtifactSource, IdempotencyRecord
from engram.store.jobs import Job, JobState, NewJob
from engram.store.postgres import artifacts, jobs
from engram.store.postgres.conn import ALL_OWNERS, Database


def _now() -> datetime:
    return datetime.now(UTC)


class QueueMethods:
    db: Database

    def owner_of(self, cube: int) -> str:
        raise NotImplementedError

    def enqueue_jobs(self, new: list[NewJob], max_attempts: int) -> int:
        if not new:
            return 0
        owners = {j.cube: self.owner_of(j.cube) for j in new}
        with self.db.tx(ALL_OWNERS) as cur:
            return jobs.enqueue_jobs(cur, owners, new, max_attempts, _now())

    def claim_job(self, lease_s: float) -> Job | None:
        with self.db.tx(ALL_OWNERS) as cur:
            return jobs.claim_job(cur, _now(), lease_s)

    def finish_job(
        self,
        job: Job,
        state: JobState,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        retry_in_s: float = 0.0,
    ) -> None:
        now = _now()
        with self.db.tx(job.owner) as cur:
            jobs.finish_job(
                cur,
                job.owner,
                list(job.ids),
                state,
                error,
                result,
                now + timedelta(seconds=retry_in_s),
                now,
            )

    def jobs(self, cube: int | None, states: tuple[JobState, ...], limit: int) -> list[Job]:
        owner = None if cube is None else self.owner_of(cube)
        with self.db.tx(ALL_OWNERS if owner is None else owner) as cur:
            return jobs.list_jobs(cur, owner, cube, states, limit)

    def retry_jobs(self, cube: int | None, ids: list[int] | None) -> int:
        owner = None if cube is None else self.owner_of(cube)
        with self.db.tx(ALL_OWNERS if owner is None else owner) as cur:
            return jobs.retry_jobs(cur, owner, cube, ids, _now())

    def claim_idempotency(
        self, owner: str, key: str, fingerprint: str, ttl_s: float, lease_s: float
    ) -> IdempotencyRecord | None:
        with self.db.tx(owner) as cur:
            return artifacts.claim_idempotency(cur, owner, key, fingerprint, _now(), ttl_s, lease_s)

    def finish_idempotency(self, owner: str, key: str, status: int, response: str) -> None:
        with self.db.tx(owner) as cur:
            artifacts.finish_idempotency(cur, owner, key, status, response)

    def release_idempotency(self, owner: str, key: str) -> None:
        with self.db.tx(owner) as cur:
            artifacts.release_idempotency(cur, owner, key)

    def record_artifact(
        self, tier: str, owner: str, artifact: str, sources: list[tuple[str, int]]
    ) -> None:
        with self.db.tx(owner) as cur:
            artifacts.record(cur, tier, owner, artifact, sources, _now())

    def artifacts(
        self,
        tier: str | None = None,
        owner: str | None = None,
        memory_ids: list[str] | None = None,
    ) -> list[ArtifactSource]:
        with self.db.tx(ALL_OWNERS if owner is None else owner) as cur:
            return artifacts.select(cur, tier, owner, memory_ids)

    def forget_artifact(self, tier: str, owner: str, artifact: str) -> None:
        with self.db.tx(owner) as cur:
            artifacts.forget(cur, tier, owner, artifact)
