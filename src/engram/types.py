"""Typed values that cross Engram's public API: messages, memory items, provenance, hits."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engram.timeutil import parse_time


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryType(StrEnum):
    """The built-in kinds of text memory; `register_memory_type` adds more."""

    TURN = "turn"
    FACT = "fact"
    PREFERENCE = "preference"
    EVENT = "event"
    SUMMARY = "summary"
    EXPERIENCE = "experience"
    DOCUMENT = "document"
    NOTE = "note"


MEMORY_TYPES: dict[str, None] = dict.fromkeys(t.value for t in MemoryType)  # ordered set


def register_memory_type(name: str) -> str:
    """Make a new memory type valid everywhere (add, filters, import)."""
    if not isinstance(name, str) or not name.isidentifier() or len(name) > 64:
        raise ValueError(f"memory type {name!r} must be an identifier of at most 64 characters")
    MEMORY_TYPES[name] = None
    return name


class MemoryState(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class VersionEvent(StrEnum):
    """Why a version of a memory exists."""

    ADD = "add"
    UPDATE = "update"
    MERGE = "merge"
    DELETE = "delete"
    RESTORE = "restore"


class Message(_Strict):
    """One chat message as given to `Memory.add`."""

    role: str = Field(default="user", description="user, assistant, system, tool ...")
    content: str = Field(description="The message text.")
    name: str | None = Field(default=None, description="Speaker name, if any.")
    timestamp: datetime | None = Field(default=None, description="When it was said.")
    source_id: str | None = Field(
        default=None, description="Caller's id for this turn (e.g. a LoCoMo dia_id)."
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _one_time_rule(cls, value: Any) -> Any:
        """ISO-8601 or a datetime, never a number (see `engram.timeutil.parse_time`)."""
        return parse_time(value, "timestamp")


class Provenance(_Strict):
    """Where a memory came from."""

    owner: str = Field(description="The MemCube owner, e.g. 'user:alice'.")
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    source_id: str | None = Field(default=None, description="Caller-given id of the source.")
    turn_index: int | None = Field(default=None, description="Position in the added batch.")
    role: str | None = None
    name: str | None = None
    timestamp: datetime | None = Field(default=None, description="When it happened.")
    source: str = Field(default="api", description="How it arrived: api, import:locomo ...")


class MemoryItem(_Strict):
    """One text memory with its metadata, provenance and statistics."""

    id: str
    memory: str = Field(description="The memory text.")
    type: str = Field(
        default=MemoryType.TURN.value,
        description="The memory type's name. Checked when written (add, filters), read back "
        "as stored: a process that never registered a custom type can still read it.",
    )
    state: MemoryState = MemoryState.ACTIVE
    metadata: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance
    version: int = 1
    created_at: datetime
    updated_at: datetime
    access_count: int = 0
    last_accessed_at: datetime | None = None


class Version(_Strict):
    """One entry in a memory's history."""

    version: int
    event: VersionEvent
    memory: str | None = Field(description="The text at this version (None once purged).")
    metadata: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    source: str | None = Field(default=None, description="What caused the change.")
    at: datetime


class SearchHit(_Strict):
    """A memory returned by search, with its score and provenance."""

    id: str
    memory: str
    cube: str = Field(
        description="The owner of the cube the hit came from: the searched owner, or a "
        "cube it mounts (docs/compose.md)."
    )
    score: float = Field(
        description="Ranking score: higher ranks first; comparable among hits of one cube "
        "in one result list only (the hybrid pipeline sums signals standardised over the "
        "cube's memories)."
    )
    relevance: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Cosine similarity of query and memory under the embedder, clipped to "
        "[0, 1]: comparable across searches and owners (see docs/api.md for its scale).",
    )
    type: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: MemoryItem, score: float, relevance: float = 0.0) -> SearchHit:
        return cls(
            id=item.id,
            memory=item.memory,
            cube=item.provenance.owner,
            score=score,
            relevance=relevance,
            type=item.type,
            metadata=item.metadata,
            provenance=item.provenance,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )


class Mount(_Strict):
    """A cube mounted read-only beside an owner's own (`Memory.mount`, docs/compose.md)."""

    owner: str = Field(description="The owner that reads the cube, e.g. 'user:alice'.")
    cube: str = Field(description="The owner of the mounted cube, e.g. 'agent:team'.")
    mounted_at: datetime


class Page(_Strict):
    """One page of `get_all`; pass `next_cursor` back to get the next one."""

    items: list[MemoryItem]
    next_cursor: str | None = None


class FeedbackResult(_Strict):
    """What one `feedback(...)` report recorded and the owner's reranker weights after it."""

    owner: str
    recorded: int
    weights: dict[str, float]


class DeleteResult(_Strict):
    """What `delete` did: "archived" (restorable) or "erased" (gone from every tier)."""

    id: str
    deleted: Literal["archived", "erased"]


class CubeStats(_Strict):
    """Counts for one MemCube."""

    owner: str
    active: int
    archived: int
    by_type: dict[str, int]
    sessions: int
    first_at: datetime | None = None
    last_at: datetime | None = None
