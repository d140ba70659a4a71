"""The narrow storage contract every backend (SQLite, PostgreSQL) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import numpy as np

from engram.store.feedback import FeedbackEvent, FeedbackLog
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


class Store(Protocol):
    """Persistence for text memories. Every method that writes is one transaction. Keys
    and cube ids are never reused, even after a purge."""

    def check_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; raise EmbedderMismatchError on a different one."""

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
    ) -> int:
        """Archive or restore memories, one version each; returns how many changed."""

    def purge(self, cube: int, keys: list[int]) -> int:
        """Delete memories and every trace of their text; returns how many. A cube left
        empty is deleted too (its owner disappears from `owners`)."""

    def history(self, cube: int, key: int) -> list[Version]:
        """Every version of a memory, oldest first."""

    def lexical(self, cube: int, terms: list[str], k: int, flt: MemoryFilter) -> list[Scored]:
        """BM25 over the index text; terms are plain words, quoted by the store."""

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

    def close(self) -> None:
        """Flush and release connections."""
