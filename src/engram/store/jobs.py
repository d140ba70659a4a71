"""Background jobs as the store keeps them: one row per (cube, session, extractor, input),
so the same input is never queued twice; claimed with a lease, so a worker that died
leaves its job to the next one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class NewJob:
    """A job about to be queued; `input_hash` identifies its input (idempotence key)."""

    cube: int
    session_id: str | None
    extractor: str
    input_hash: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A queued, running or finished job. A claim takes every queued job of the same
    (cube, session, extractor) at once: `ids` are all of them, `payloads` theirs."""

    id: int
    cube: int
    owner: str
    session_id: str | None
    extractor: str
    input_hash: str
    state: JobState
    attempts: int
    max_attempts: int
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    ids: tuple[int, ...] = ()
    payloads: tuple[dict[str, Any], ...] = ()
