"""The narrow storage contract every backend (SQLite, PostgreSQL) implements."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from engram.store.feedback import FeedbackEvent, FeedbackLog
from engram.store.jobs import Job, JobState, NewJob
from engram.store.vector_index import CubeSnapshot
from engram.types import CubeStats, MemoryItem, MemoryState, Version, VersionEvent


@dataclass(frozen=True)
class NewMemory:
    """A memory about to be written; the store assigns key, id and timestamps."""

    text: str
    index_text: str
    type: str
    metadata: dict[str, Any]
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    source_id: str | None
    turn_index: int | None
    role: str | None
    name: str | None
    occurred_at: datetime | None
    source: str
    tier: str = "long_term"  # retention tier: working, episodic or long_term
    expires_at: datetime | None = None  # archived by gc (and lazily by search) after this


@dataclass(frozen=True)
class RetentionRow:
    """The retention state of one memory (engram.lifecycle reads and decides on it)."""

    key: int
    id: str
    type: str
    state: MemoryState
    tier: str
    session_id: str | None
    created_at: datetime
    strength: float | None  # stability in days; None: never recalled (the initial one)
    last_recalled_at: datetime | None
    recall_count: int
    pinned: bool
    expires_at: datetime | None
    importance: float | None  # metadata "importance" when it is a number
    access_count: int
    last_accessed_at: datetime | None


@dataclass(frozen=True)
class RetentionPlan:
    """What one gc run changes in a cube (keys -> reasons)."""

    displace: tuple[int, ...] = ()  # working -> episodic (buffer bookkeeping, no version)
    promote: dict[int, str] = field(default_factory=dict)  # -> long_term, with a version
    promote_strength: float = 0.0  # promoted memories get at least this strength (days)
    evict: dict[int, str] = field(default_factory=dict)  # archived, with a version

    def __len__(self) -> int:
        return len(self.displace) + len(self.promote) + len(self.evict)


FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in")


@dataclass(frozen=True)
class MemoryFilter:
    """Restricts which memories of a cube a search or listing sees."""

    types: tuple[str, ...] = ()
    states: tuple[MemoryState, ...] = (MemoryState.ACTIVE,)
    session_id: str | None = None
    agent_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {op: value}

    @property
    def is_trivial(self) -> bool:
        """True when only the default state filter applies (fast paths may skip SQL)."""
        return (
            not self.types
            and self.states == (MemoryState.ACTIVE,)
            and self.session_id is None
            and self.agent_id is None
            and self.since is None
            and self.until is None
            and not self.metadata
        )


@dataclass(frozen=True)
class Scored:
    """A store key with a retriever's score (higher is better)."""

    key: int
    score: float


@dataclass(frozen=True)
class Change:
    """A new version of one memory: text (re-embedded) and/or metadata."""

    event: VersionEvent
    text: str | None = None
    index_text: str | None = None
    vector: np.ndarray | None = None
    metadata: dict[str, Any] | None = None
    reason: str | None = None
    source: str | None = None


class Located(NamedTuple):
    cube: int
    key: int
    owner: str


@dataclass(frozen=True)
class IdempotencyRecord:
    """What is stored under an owner's idempotency key (see engram.server.idempotency)."""

    fingerprint: str  # hash of the request the key was first used with
    state: str  # 'running' or 'done'
    status: int | None = None  # the response, once done
    response: str | None = None


@dataclass(frozen=True)
class ArtifactSource:
    """One memory an artifact of a derived tier (a KV block, an adapter version) was built
    from, at the version it had then."""

    tier: str  # 'activation' | 'parametric'
    owner: str
    artifact: str  # KV block key, or 'v<N>' for an adapter version
    memory_id: str
    memory_version: int
    created_at: str


class Store(Protocol):
    """Persistence for text memories. Every method that writes is one transaction. Keys
    and cube ids are never reused, even after a purge."""

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; raise EmbedderMismatchError on a different one."""

    def recorded_embedder(self) -> str | None:
        """The name of the embedder the store's vectors are of; None before the first one."""

    def cube_id(self, owner: str, create: bool = False) -> int | None:
        """The numeric id of a cube, creating it when asked; None if absent."""

    def owners(self) -> list[str]:
        """Every cube owner in the store."""

    def insert(self, cube: int, rows: list[NewMemory], vectors: np.ndarray) -> list[MemoryItem]:
        """Store rows (idempotent on (cube, source_id)); return them in input order, as
        read inside the same transaction. CubeGoneError when the cube was erased."""

    def by_keys(self, cube: int, keys: list[int]) -> dict[int, MemoryItem]:
        """Items by store key; keys not in the cube are left out."""

    def keys(self, cube: int, flt: MemoryFilter) -> list[int]:
        """Keys of every memory in the cube that passes the filter."""

    def known_sources(self, cube: int, source_ids: list[str]) -> set[str]:
        """Those of `source_ids` the cube holds as a source id, or as a memory id (an
        exported memory's id is its source id when re-imported)."""

    def locate(self, memory_id: str) -> Located | None:
        """Where a public memory id lives, or None."""

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` memory ids (any owner) that start with `prefix`, in order."""

    def page(
        self, cube: int, flt: MemoryFilter, limit: int, after: int | None
    ) -> tuple[list[MemoryItem], int | None]:
        """Items in insertion order after key `after`; returns the next cursor key."""

    def change(self, cube: int, key: int, change: Change) -> MemoryItem:
        """Apply a new version to one memory; NotFoundError when it is gone."""

    def set_state(
        self,
        cube: int,
        keys: list[int],
        state: MemoryState,
        event: VersionEvent,
        reason: str | None,
        source: str | None = None,
    ) -> int:
        """Archive or restore memories, one version each (with `reason` and `source`);
        returns how many changed."""

    def purge(self, cube: int, keys: list[int]) -> int:
        """Delete memories and every trace of their text; returns how many. A cube left
        empty is deleted too (its owner disappears from `owners`)."""

    def history(self, cube: int, key: int) -> list[Version]:
        """Every version of a memory, oldest first."""

    def lexical(self, cube: int, terms: list[str], k: int, flt: MemoryFilter) -> list[Scored]:
        """The cube's memories matching any of `terms` (plain words, quoted by the store),
        ranked by the backend's full-text score. SQLite's FTS5 bm25() takes its statistics
        from the whole table (every owner), so retrieval does not rank by it: the `bm25`
        pipeline scores with per-cube statistics (engram.text.retrieval.bm25)."""

    def dense(self, cube: int, vector: np.ndarray, k: int, flt: MemoryFilter) -> list[Scored]:
        """Cosine similarity of unit vectors."""

    def add_feedback(
        self,
        cube: int,
        query: str,
        vector: np.ndarray,
        events: list[FeedbackEvent],
        weights: dict[str, float] | None,
    ) -> None:
        """Record one query's feedback events and the cube's updated reranker weights."""

    def feedback(self, cube: int) -> FeedbackLog:
        """The cube's feedback log (cached until its feedback changes)."""

    def snapshot(self, cube: int) -> CubeSnapshot:
        """The cube's active memories as arrays (keys, vectors, sessions, speakers)."""

    def vectors(self, cube: int, keys: list[int]) -> np.ndarray:
        """The stored unit vectors of `keys`, in that order."""

    def record_access(self, cube: int, counts: dict[int, int], at: datetime) -> None:
        """Add search-hit counts (key -> hits) of one cube to access statistics."""

    def stats(self, cube: int) -> CubeStats:
        """Counts for one cube; NotFoundError when the cube is gone."""

    def retention_rows(
        self, cube: int, keys: list[int] | None = None, tiers: tuple[str, ...] = ()
    ) -> list[RetentionRow]:
        """Retention state of the cube's active memories (only `keys` / `tiers` if given),
        in key order. Archived memories too when `keys` are given."""

    def reinforce(
        self,
        cube: int,
        keys: list[int],
        strength: Callable[[RetentionRow], float],
        recalled: bool,
        at: datetime,
    ) -> list[RetentionRow]:
        """Set each memory's strength to `strength(row)` (read and written in one
        transaction); `recalled`: also count a recall at `at`. Returns the rows after."""

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
        """Pin/unpin or move memories to a tier; with a `reason`, each changed memory
        gets a version row ('update', reason, source). Returns how many changed."""

    def apply_retention(self, cube: int, plan: RetentionPlan, source: str) -> RetentionPlan:
        """Carry out a gc plan in one transaction: displace from the working buffer,
        promote (version row, strength floor), archive (version row with its own reason).
        Rows no longer eligible (archived or pinned meanwhile) are skipped; returns what
        was done."""

    def expired(self, cube: int, at: datetime) -> list[int]:
        """Keys of active, unpinned memories whose `expires_at` is at or before `at`."""

    def retention_policies(self, cube: int) -> dict[str, dict[str, Any]]:
        """The cube's own policy overrides by memory type ('*' for all)."""

    def set_retention_policy(
        self, cube: int, memory_type: str, policy: dict[str, Any] | None
    ) -> None:
        """Store (None: remove) the cube's policy override for a memory type."""

    def transaction(self) -> AbstractContextManager[None]:
        """Group this thread's writes into one transaction: all commit or none does."""

    def enqueue_jobs(self, jobs: list[NewJob], max_attempts: int) -> int:
        """Queue jobs not queued before (same cube, session, extractor and input hash);
        returns how many are new."""

    def claim_job(self, lease_s: float) -> Job | None:
        """Take the oldest runnable job, with every queued job of its (cube, session,
        extractor), for `lease_s` seconds; None when nothing is runnable."""

    def finish_job(
        self,
        job: Job,
        state: JobState,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        retry_in_s: float = 0.0,
    ) -> None:
        """Record how a claimed job ended; QUEUED with `retry_in_s` schedules a retry."""

    def jobs(self, cube: int | None, states: tuple[JobState, ...], limit: int) -> list[Job]:
        """The newest jobs (of one cube or all; of some states or all), newest first."""

    def retry_jobs(self, cube: int | None, ids: list[int] | None) -> int:
        """Failed jobs back to the queue with fresh attempts; returns how many."""

    def claim_idempotency(
        self, owner: str, key: str, fingerprint: str, ttl_s: float, lease_s: float
    ) -> IdempotencyRecord | None:
        """Hold `key` for a write now starting (None), or return the record already there
        (done, or running elsewhere). Expired records are dropped first."""

    def finish_idempotency(self, owner: str, key: str, status: int, response: str) -> None:
        """Store the response of the write that holds `key`."""

    def release_idempotency(self, owner: str, key: str) -> None:
        """The write that held `key` failed: forget it, so a retry runs again."""

    def record_artifact(
        self, tier: str, owner: str, artifact: str, sources: list[tuple[str, int]]
    ) -> None:
        """Record the (memory id, version) pairs an artifact was built from (replacing
        what was recorded for it before)."""

    def artifacts(
        self,
        tier: str | None = None,
        owner: str | None = None,
        memory_ids: list[str] | None = None,
    ) -> list[ArtifactSource]:
        """Recorded sources of tier artifacts, narrowed to a tier, an owner, memory ids."""

    def forget_artifact(self, tier: str, owner: str, artifact: str) -> None:
        """Drop what was recorded about an artifact (it was deleted)."""

    def mount(self, owner: str, cube: str, at: datetime) -> bool:
        """Mount the cube of owner `cube` read-only beside `owner`'s own (False: mounted
        already). The store refuses nothing here: Memory checks both owners first."""

    def unmount(self, owner: str, cube: str) -> bool:
        """Remove a mount; False when there was none."""

    def mounts(self, owner: str) -> list[tuple[str, datetime]]:
        """The owners whose cubes `owner` mounts, with when, in the order mounted. An
        erasure of either owner's last memory removes the mount (in its transaction)."""

    def close(self) -> None:
        """Flush and release connections."""


@runtime_checkable
class CandidateSearch(Protocol):
    """A store that narrows a search of a large cube to candidates it finds itself (an ANN
    index plus full text), instead of scoring the whole cube's snapshot in process."""

    def search_snapshot(
        self,
        cube: int,
        terms: list[str],
        vector: Callable[[], np.ndarray],
        flt: MemoryFilter,
    ) -> CubeSnapshot:
        """The rows a search scores: the cube's whole (cached) snapshot while the cube is
        small, else the candidates for the query's `terms` and `vector()` (called only
        then), active and passing `flt`, keys ascending."""
