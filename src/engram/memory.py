"""The Memory facade: mem0-style verbs over owner-scoped MemCubes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engram.config import EngramConfig, load_config
from engram.cube import MemCube
from engram.embed import Embedder, build_embedder
from engram.errors import ConfigError, EngramError, NotFoundError, ValidationError
from engram.scope import (
    Scope,
    build_filter,
    check_id,
    decode_cursor,
    encode_cursor,
    parse_memory_type,
    parse_time,
)
from engram.store.base import NewMemory, Store
from engram.text.access import AccessRecorder
from engram.text.ingest import MessagesInput, check_metadata, check_text, new_rows, to_messages
from engram.text.retrieval import Retriever, build_pipeline
from engram.types import CubeStats, MemoryItem, MemoryType, Page, SearchHit, Version


def open_store(config: EngramConfig, dim: int) -> Store:
    """The store named by `database_url` (SQLite by default)."""
    if config.database_url and config.database_url.startswith("postgresql://"):
        raise ConfigError("the PostgreSQL store is not available in this version of Engram")
    from engram.store.sqlite import SQLiteStore

    return SQLiteStore(
        config.sqlite_path,
        dim,
        synchronous=config.sqlite.synchronous,
        busy_timeout_s=config.sqlite.busy_timeout_s,
    )


@dataclass(frozen=True)
class AddRequest:
    """The arguments of one `Memory.add`, for `Memory.add_batch`."""

    messages: MessagesInput
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] | None = None
    timestamp: datetime | str | None = None
    memory_type: MemoryType | str = MemoryType.TURN
    source: str = "api"


class Memory:
    """A memory for LLM apps. `Memory()` is embedded: SQLite under ENGRAM_HOME + MiniLM.

    Every memory belongs to an owner (`user_id`, else `agent_id`); each owner's memories
    live in their own MemCube and a call scoped to one owner never sees another's.
    """

    def __init__(
        self,
        config: EngramConfig | None = None,
        *,
        embedder: Embedder | dict[str, Any] | None = None,
        store: Store | None = None,
        **overrides: Any,
    ):
        if isinstance(embedder, dict):  # embedder settings, like search={...} or limits={...}
            overrides["embedder"], embedder = embedder, None
        if embedder is not None and not isinstance(embedder, Embedder):
            raise ConfigError("embedder must be an Embedder instance or a dict of settings")
        if config is not None and overrides:
            raise ConfigError("pass either a config object or keyword settings, not both")
        self.config = config or load_config(**overrides)
        self._pipelines: dict[str, Retriever] = {}
        self._cubes: dict[str, MemCube] = {}
        self._lock = threading.Lock()
        self.pipeline(self.config.search.pipeline)  # fail at start on an unknown name
        self._owns = (embedder is None, store is None)  # close only what we opened
        self.embedder = embedder or build_embedder(self.config.embedder)
        self.access: AccessRecorder | None = None
        try:
            self.store = store or open_store(self.config, self.embedder.dim)
        except EngramError:
            self._close_owned(store=None)
            raise
        try:
            self.store.check_embedder(self.embedder.name, self.embedder.dim)
        except EngramError:
            self._close_owned(store=self.store)
            raise
        self.access = AccessRecorder(self.store) if self.config.search.track_access else None

    # -- plumbing ---------------------------------------------------------------------

    def pipeline(self, name: str | None = None) -> Retriever:
        """The retrieval pipeline registered under `name` (default: config)."""
        name = name or self.config.search.pipeline
        with self._lock:
            if name not in self._pipelines:
                self._pipelines[name] = build_pipeline(name)
            return self._pipelines[name]

    def cube(self, scope: Scope, create: bool = False) -> MemCube | None:
        """The MemCube of a scope's owner (None if it has no memories yet)."""
        owner = scope.owner
        if owner is None:
            raise ValidationError("give user_id or agent_id: every memory belongs to an owner")
        with self._lock:
            cached = self._cubes.get(owner)
        if cached is not None:
            return cached
        cube_id = self.store.cube_id(owner, create=create)
        if cube_id is None:
            return None
        cube = MemCube(owner, cube_id, self.store, self.embedder, self.access)
        with self._lock:
            return self._cubes.setdefault(owner, cube)

    def _owned(self, memory_id: str, user_id: str | None, agent_id: str | None) -> MemCube:
        """The cube holding `memory_id`, checked against the caller's scope when given."""
        check_id(memory_id, "memory id")
        scope = Scope.of(user_id, agent_id, required=False)
        if scope.owner is not None:
            cube = self.cube(scope)
            if cube is None:
                raise NotFoundError(f"no memory {memory_id!r} for {scope.owner}")
            return cube
        found = self.store.locate(memory_id)
        if found is None:
            raise NotFoundError(f"no memory {memory_id!r}")
        owned = self.cube(Scope.of(**Scope.owner_kwargs(found.owner)))
        assert owned is not None
        return owned

    # -- verbs ------------------------------------------------------------------------

    def add(
        self,
        messages: MessagesInput,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        memory_type: MemoryType | str = MemoryType.TURN,
        source: str = "api",
    ) -> list[MemoryItem]:
        """Store each message as a memory with provenance; returns what was stored.

        A message whose `source_id` already exists in the owner's cube is not stored twice:
        the existing memory is returned in its place (imports are idempotent).
        """
        request = AddRequest(
            messages, user_id, agent_id, session_id, metadata, timestamp, memory_type, source
        )
        return self.add_batch([request], chunk_size=None)[0]

    def add_batch(
        self,
        requests: Sequence[AddRequest],
        *,
        chunk_size: int | None = 512,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[MemoryItem]]:
        """Many adds at once. Every request is validated before anything is written; then
        rows are embedded and written `chunk_size` at a time (one transaction per chunk and
        owner; `None`: one transaction per owner). `progress(n)` is called with the number
        of rows written so far."""
        if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
            raise ValidationError("chunk_size must be a positive integer or None")
        planned: list[tuple[Scope, list[NewMemory]]] = []
        for i, req in enumerate(requests):
            try:
                planned.append(self._plan(req))
            except ValidationError as err:
                where = f"request {i}: " if len(requests) > 1 else ""
                raise ValidationError(f"{where}{err}") from err
        by_owner: dict[str, list[int]] = {}
        for i, (scope, _) in enumerate(planned):
            by_owner.setdefault(str(scope.owner), []).append(i)
        stored: list[list[MemoryItem]] = [[] for _ in planned]
        done = 0
        for indices in by_owner.values():
            cube = self.cube(planned[indices[0]][0], create=True)
            assert cube is not None
            slots = [(i, row) for i in indices for row in planned[i][1]]
            step = chunk_size or len(slots)
            for start in range(0, len(slots), step):
                chunk = slots[start : start + step]
                for (i, _), item in zip(chunk, cube.add([row for _, row in chunk]), strict=True):
                    stored[i].append(item)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        return stored

    def _plan(self, req: AddRequest) -> tuple[Scope, list[NewMemory]]:
        scope = Scope.of(req.user_id, req.agent_id, req.session_id)
        rows = new_rows(
            to_messages(req.messages, self.config.limits),
            mtype=parse_memory_type(req.memory_type),
            metadata=check_metadata(req.metadata, self.config.limits),
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            session_id=scope.session_id,
            timestamp=parse_time(req.timestamp, "timestamp"),
            source=check_id(req.source, "source"),
        )
        return scope, rows

    def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        types: Iterable[str | MemoryType] | str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        pipeline: str | None = None,
    ) -> list[SearchHit]:
        """The `k` memories of the owner most relevant to `query`, best first."""
        query = check_text(query, self.config.limits, "query")
        k = self._check_k(k)
        scope = Scope.of(user_id, agent_id, session_id)
        flt = build_filter(scope, types=types, since=since, until=until, filters=filters)
        retriever = self.pipeline(pipeline)
        cube = self.cube(scope)
        if cube is None:
            return []
        return cube.search(query, k, flt, retriever, self.config.search.candidates)

    def _reason(self, reason: str | None) -> str | None:
        return None if reason is None else check_text(reason, self.config.limits, "reason")

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return self.config.search.default_k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.config.search.max_k:
            raise ValidationError(f"k must be an integer from 1 to {self.config.search.max_k}")
        return k

    def get(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> MemoryItem:
        """One memory by id (archived ones too); NotFoundError outside the caller's scope."""
        return self._owned(memory_id, user_id, agent_id).get(memory_id)

    def get_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        filters: dict[str, Any] | None = None,
        types: Iterable[str | MemoryType] | str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        include_archived: bool = False,
    ) -> Page:
        """A page of the owner's memories in insertion order; follow `next_cursor`."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise ValidationError("limit must be an integer from 1 to 1000")
        scope = Scope.of(user_id, agent_id, session_id)
        flt = build_filter(
            scope,
            types=types,
            since=since,
            until=until,
            filters=filters,
            include_archived=include_archived,
        )
        after = decode_cursor(cursor)
        cube = self.cube(scope)
        if cube is None:
            return Page(items=[])
        page, next_key = cube.page(flt, limit, after)
        return Page(items=page.items, next_cursor=encode_cursor(next_key))

    def iter_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        include_archived: bool = False,
    ) -> Iterator[MemoryItem]:
        """Every memory of an owner, streamed (for export)."""
        scope = Scope.of(user_id, agent_id)
        cube = self.cube(scope)
        if cube is None:
            return iter(())
        return cube.iter_all(build_filter(scope, include_archived=include_archived))

    def update(
        self,
        memory_id: str,
        text: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> MemoryItem:
        """Write a new version (text re-embedded); the old one stays in `history`."""
        if text is None and metadata is None:
            raise ValidationError("update needs new text, new metadata or both")
        if text is not None:
            text = check_text(text, self.config.limits)
        meta = None if metadata is None else check_metadata(metadata, self.config.limits)
        reason = self._reason(reason)
        return self._owned(memory_id, user_id, agent_id).update(memory_id, text, meta, reason)

    def delete(
        self,
        memory_id: str,
        *,
        hard: bool = False,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> None:
        """Archive a memory (restorable); `hard=True` erases it and its history (GDPR)."""
        reason = self._reason(reason)
        cube = self._owned(memory_id, user_id, agent_id)
        if hard:
            cube.purge(memory_id)
        else:
            cube.archive(memory_id, reason)

    def restore(
        self,
        memory_id: str,
        *,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> MemoryItem:
        """Bring an archived memory back; records a 'restore' version."""
        reason = self._reason(reason)
        cube = self._owned(memory_id, user_id, agent_id)
        cube.restore(memory_id, reason)
        return cube.get(memory_id)

    def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        hard: bool = False,
    ) -> int:
        """Archive (or with `hard=True` erase) all of an owner's memories; returns the count."""
        scope = Scope.of(user_id, agent_id, session_id)
        cube = self.cube(scope)
        if cube is None:
            return 0
        flt = build_filter(scope, include_archived=hard)
        return cube.purge_where(flt) if hard else cube.archive_where(flt, "delete_all")

    def history(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> list[Version]:
        """Every version of a memory, oldest first: text, when, and why."""
        return self._owned(memory_id, user_id, agent_id).history(memory_id)

    def stats(self, *, user_id: str | None = None, agent_id: str | None = None) -> CubeStats:
        """Counts for one owner's cube."""
        scope = Scope.of(user_id, agent_id)
        cube = self.cube(scope)
        if cube is None:
            raise NotFoundError(f"no memories for {scope.owner}")
        return cube.stats()

    def owners(self) -> list[str]:
        """Every owner with a MemCube in this store ('user:alice', 'agent:bot' ...)."""
        return self.store.owners()

    def close(self) -> None:
        """Flush buffered statistics; close the store and embedder if this object opened them."""
        if self.access is not None:
            self.access.flush()
        self._close_owned(self.store)

    def _close_owned(self, store: Store | None) -> None:
        owns_embedder, owns_store = self._owns
        if owns_store and store is not None:
            store.close()
        if owns_embedder:
            self.embedder.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def home(self) -> Path:
        return self.config.home
