"""The extractor contract: read one session (or a whole cube) and plan derived memories.

An extractor never writes: it returns a `Plan`, and `engram.extract.apply` writes the whole
plan in one transaction, so a job is applied entirely or not at all."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

import numpy as np

from engram.config import ExtractConfig
from engram.embed.base import Embedder
from engram.errors import EngramError
from engram.llm.base import ChatModel
from engram.store.base import MemoryFilter, Store
from engram.types import MemoryItem, MemoryState, MemoryType


class ExtractionError(EngramError):
    """An extractor could not produce a valid plan (e.g. the LLM kept answering malformed
    JSON); nothing of the job was written."""

    code = "extraction_failed"


@dataclass(frozen=True)
class Turns:
    """Memories of a cube in key order, with their store keys and unit vectors."""

    keys: list[int]
    items: list[MemoryItem]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class ExtractionContext:
    """What one job works on: a cube, a session (None: the whole cube), the ids of the
    memories whose arrival queued the job (None: all), settings and the optional LLM."""

    owner: str
    cube: int
    store: Store
    embedder: Embedder
    config: ExtractConfig
    session_id: str | None = None
    new_ids: list[str] | None = None  # None: every memory in scope
    llm: ChatModel | None = None

    def memories(
        self,
        types: tuple[str, ...] = (MemoryType.TURN.value,),
        *,
        session: bool = True,
        archived: bool = False,
    ) -> Turns:
        """Memories of these types (of the job's session unless `session=False`)."""
        states = (MemoryState.ACTIVE, MemoryState.ARCHIVED) if archived else (MemoryState.ACTIVE,)
        flt = MemoryFilter(
            types=types, states=states, session_id=self.session_id if session else None
        )
        keys = self.store.keys(self.cube, flt)
        found = self.store.by_keys(self.cube, keys)
        keys = [k for k in keys if k in found]
        vectors = self.store.vectors(self.cube, keys)
        return Turns(keys, [found[k] for k in keys], vectors)

    def derived(self, extractor: str, types: tuple[str, ...]) -> dict[str, MemoryItem]:
        """Memories this extractor made before (archived too), by their derived key."""
        found = self.memories(types, session=False, archived=True)
        prefix = f"{extractor}:"
        return {
            item.provenance.source_id: item
            for item in found.items
            if item.provenance.source_id and item.provenance.source_id.startswith(prefix)
        }


@dataclass(frozen=True)
class Derived:
    """A memory an extractor wants to exist. With a `key`, it is the one memory of that
    key: inserted the first time, updated when its text changes, left alone when a person
    or a merge archived it. Without one, it is added."""

    text: str
    type: str
    sources: list[MemoryItem]
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class Revision:
    """A new version of an existing memory (text and/or metadata) with why."""

    item: MemoryItem
    reason: str
    text: str | None = None
    metadata: dict[str, Any] | None = None
    event: Literal["update", "merge"] = "update"


@dataclass(frozen=True)
class Retirement:
    """An existing memory archived (restorable; its text stays in history) with why."""

    item: MemoryItem
    reason: str
    event: Literal["delete", "merge"] = "delete"


@dataclass
class Plan:
    """Everything one job changes, written in one transaction."""

    derived: list[Derived] = field(default_factory=list)
    revisions: list[Revision] = field(default_factory=list)
    retirements: list[Retirement] = field(default_factory=list)
    note: str | None = None  # why nothing was planned, for the job's result

    def __bool__(self) -> bool:
        return bool(self.derived or self.revisions or self.retirements)


class Extractor(ABC):
    """One strategy that derives memories. `scope` says whether a job covers one session
    or the whole cube; `source` is written into provenance and history."""

    name: ClassVar[str]
    scope: ClassVar[Literal["session", "cube"]] = "session"
    source: ClassVar[str] = "extract:offline"
    needs_llm: ClassVar[bool] = False
    needs_session: ClassVar[bool] = False  # turns added without a session queue no job

    @abstractmethod
    def plan(self, ctx: ExtractionContext) -> Plan:
        """What should change; never writes."""


def source_ids(items: list[MemoryItem]) -> list[str]:
    """The turn ids a derived memory stands for: each source's caller-given id (a LoCoMo
    dia_id), else its memory id. Retrieval benchmarks read these (`metadata["source_ids"]`)."""
    out: dict[str, None] = {}
    for item in items:
        for sid in item.metadata.get("source_ids") or [item.provenance.source_id or item.id]:
            out.setdefault(str(sid), None)
    return list(out)
