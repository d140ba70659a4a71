"""The Memory facade: mem0-style verbs over owner-scoped MemCubes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engram.answer.api import AnswerVerbs
from engram.bundle.api import BundleVerbs
from engram.compose import ComposeVerbs
from engram.config import EngramConfig, load_config
from engram.cube import CubeCache, MemCube
from engram.embed import Embedder, build_embedder
from engram.embed.lazy import LazyEmbedder
from engram.errors import (
    ConfigError,
    CubeGoneError,
    EngramError,
    NotFoundError,
    ValidationError,
)
from engram.extract.api import ExtractionVerbs
from engram.extract.jobs import Extraction
from engram.fuse.api import FuseVerbs
from engram.lifecycle import Lifecycle
from engram.lifecycle.api import RetentionVerbs
from engram.scheduler.api import ScheduleVerbs
from engram.scheduler.runner import MoveRunner
from engram.scope import (
    CursorCodec,
    Scope,
    build_filter,
    check_flag,
    check_id,
    owner_args,
)
from engram.secret import load_or_create_secret, secret_path
from engram.store.base import NewMemory, Store
from engram.store.factory import open_store
from engram.store.feedback import FeedbackLabel
from engram.text.access import AccessRecorder
from engram.text.adding import AddRequest, plan_at
from engram.text.ingest import (
    MessagesInput,
    check_metadata,
    check_text,
)
from engram.text.reranker import build_reranker
from engram.text.retrieval import PIPELINES, Retriever, build_pipeline
from engram.tier_api import TierVerbs
from engram.types import (
    CubeStats,
    DeleteResult,
    FeedbackResult,
    MemoryItem,
    MemoryType,
    Page,
    SearchHit,
    Version,
)

MIN_ID_PREFIX = 4  # as git: shorter abbreviations are refused, not guessed


class Memory(
    RetentionVerbs,
    ExtractionVerbs,
    TierVerbs,
    AnswerVerbs,
    BundleVerbs,
    FuseVerbs,
    ScheduleVerbs,
    ComposeVerbs,
):
    """A memory for LLM apps. `Memory()` is embedded: SQLite under ENGRAM_HOME + MiniLM.

    Every memory belongs to an owner (`user_id`, else `agent_id`); each owner's memories
    live in their own MemCube and a call scoped to one owner never sees another's.
    """

    def __init__(
        self,
        config: EngramConfig | None = None,
        *,
        embedder: Embedder | Callable[[], Embedder] | dict[str, Any] | None = None,
        store: Store | None = None,
        **overrides: Any,
    ):
        """`embedder`: an Embedder; a function that builds one on first use (reading
        memories then never loads the model; the caller closes what it builds); a dict
        of embedder settings; or None for the configured one."""
        if isinstance(embedder, dict):  # embedder settings, like search={...} or limits={...}
            overrides["embedder"], embedder = embedder, None
        lazy = callable(embedder) and not isinstance(embedder, Embedder)
        if embedder is not None and not isinstance(embedder, Embedder) and not lazy:
            raise ConfigError(
                "embedder must be an Embedder, a function that builds one, or a dict of settings"
            )
        if config is not None and overrides:
            raise ConfigError("pass either a config object or keyword settings, not both")
        self.config = config or load_config(**overrides)
        self._pipelines: dict[str, Retriever] = {}
        self._reranker = build_reranker(self.config.search.reranker)  # ConfigError if unknown
        self._cubes = CubeCache()
        self._lock = threading.Lock()
        self._cursor_codec: CursorCodec | None = None
        self.pipeline()  # the configured name: a ConfigError at start if unknown
        Lifecycle.check(self.config.retention)  # likewise the decay law and policies
        self._owns = (embedder is None, store is None)  # close only what we opened
        self.access: AccessRecorder | None = None
        if lazy:
            self.embedder: Embedder = LazyEmbedder(embedder, self._check_embedder)  # type: ignore[arg-type]
        else:
            self.embedder = embedder or build_embedder(self.config.embedder)  # type: ignore[assignment]
        try:
            self.store = store or open_store(self.config, None if lazy else self.embedder.dim)
        except EngramError:
            self._close_owned(store=None)
            raise
        if not lazy:
            try:
                if embedder is None:  # the configured one follows what the store holds
                    self.embedder = self._follow_store(self.embedder)
                self._check_embedder(self.embedder)
            except EngramError:
                self._close_owned(store=self.store)
                raise
        self.access = AccessRecorder(self.store) if self.config.search.track_access else None
        self.lifecycle = Lifecycle(self.config.retention, self.store)
        self.extraction = Extraction(self.store, self.embedder, self.config)
        self.extraction.handlers.update(MoveRunner(self).handlers())  # the scheduler's jobs

    def _check_embedder(self, embedder: Embedder) -> None:
        self.store.check_embedder(embedder.name, embedder.dim)

    def _follow_store(self, built: Embedder) -> Embedder:
        """`built` from the configured settings, or, where `embedder.adapter = "auto"` and
        the store's vectors were made without the default adapter, the plain model."""
        recorded = self.store.recorded_embedder()
        if recorded is None or recorded == built.name or self.config.embedder.adapter != "auto":
            return built
        other = build_embedder(self.config.embedder, recorded=recorded)
        if other.name == built.name:
            other.close()
            return built
        built.close()
        return other

    # -- plumbing ---------------------------------------------------------------------

    def pipeline(self, name: str | None = None) -> Retriever:
        """The retrieval pipeline registered under `name` (default: config)."""
        if name is None:
            name = self.config.search.pipeline  # checked when the Memory was opened
        elif not isinstance(name, str) or name not in PIPELINES:
            known = ", ".join(sorted(PIPELINES))
            raise ValidationError(f"unknown retrieval pipeline {name!r}; known: {known}")
        with self._lock:
            if name not in self._pipelines:
                self._pipelines[name] = build_pipeline(name)
            return self._pipelines[name]

    def _cursors(self) -> CursorCodec:
        """Seals page cursors with the store's secret (read or made on first use)."""
        with self._lock:
            if self._cursor_codec is None:
                secret = load_or_create_secret(secret_path(self.config.sqlite_path))
                self._cursor_codec = CursorCodec(secret)
            return self._cursor_codec

    def cube(self, scope: Scope, create: bool = False) -> MemCube | None:
        """The MemCube of a scope's owner (None if it has no memories yet)."""
        owner = scope.owner
        if owner is None:
            raise ValidationError("give user_id or agent_id: every memory belongs to an owner")
        # one indexed read: a cube erased (and maybe re-created) elsewhere is never stale
        cube_id = self.store.cube_id(owner, create=create)
        if cube_id is None:
            return None
        cached = self._cubes.get(owner, cube_id)
        if cached is not None:
            return cached
        return self._cubes.put(
            MemCube(
                owner,
                cube_id,
                self.store,
                self.embedder.for_owner(owner),  # per-owner embedding cache
                self.access,
                self.lifecycle,
                self._derived_tiers(owner),  # KV blocks and adapters built from its memories
            )
        )

    def _owned(self, memory_id: str, user_id: str | None, agent_id: str | None) -> MemCube:
        """The cube holding `memory_id`, checked against the caller's scope when given:
        with a user owner, `agent_id` must also match the memory's agent."""
        check_id(memory_id, "memory id")
        scope = Scope.of(user_id, agent_id, required=False)
        if scope.owner is None:
            found = self.store.locate(memory_id)
            owned = None if found is None else self.cube(Scope.of(**owner_args(found.owner)))
            if found is None or owned is None or owned.id != found.cube:
                raise NotFoundError(f"no memory {memory_id!r}")
            return owned
        cube = self.cube(scope)
        if cube is None:
            raise NotFoundError(f"no memory {memory_id!r} for {scope.owner}")
        agent = scope.agent_filter
        if agent is not None and cube.get(memory_id).provenance.agent_id != agent:
            raise NotFoundError(f"no memory {memory_id!r} for {cube.owner}")  # as if missing
        return cube

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
        ttl: timedelta | float | None = None,
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> list[MemoryItem]:
        """Store each message as a memory with provenance; returns what was stored.
        `ttl` (a timedelta or seconds) or `expires_at`: gc archives it after that.

        A message whose `source_id` already exists in the owner's cube is not stored twice:
        the existing memory is returned in its place (imports are idempotent).

        A large add is embedded and committed `limits.add_chunk` messages at a time, each
        chunk its own transaction, so other owners' writes and searches interleave with it;
        an add that fails part-way keeps the chunks already committed. `idempotency_key`
        makes such an add safe to retry: messages without a `source_id` get one derived
        from the key, their position and their content, so a retry with the same key and
        messages stores only what is missing and returns every memory of the add.
        """
        request = AddRequest(
            messages,
            user_id,
            agent_id,
            session_id,
            metadata,
            timestamp,
            memory_type,
            source,
            ttl,
            expires_at,
            idempotency_key,
        )
        return self.add_batch([request], chunk_size=self.config.limits.add_chunk)[0]

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
        if chunk_size is not None and (
            not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
        ):
            raise ValidationError(
                f"chunk_size must be a positive integer or None, got {chunk_size!r}"
            )
        if isinstance(requests, str | bytes) or not isinstance(requests, Sequence):
            raise ValidationError(
                f"requests must be a list of AddRequest, got {type(requests).__name__}"
            )
        limits, lifecycle = self.config.limits, self.lifecycle
        planned = [plan_at(i, r, len(requests), limits, lifecycle) for i, r in enumerate(requests)]
        by_owner: dict[str, list[int]] = {}
        for i, (scope, _) in enumerate(planned):
            by_owner.setdefault(str(scope.owner), []).append(i)
        stored: list[list[MemoryItem]] = [[] for _ in planned]
        done = 0
        for indices in by_owner.values():
            scope = planned[indices[0]][0]
            slots = [(i, row) for i in indices for row in planned[i][1]]
            step = chunk_size or len(slots)
            for start in range(0, len(slots), step):
                chunk = slots[start : start + step]
                items = self._write_rows(scope, [row for _, row in chunk])
                for (i, _), item in zip(chunk, items, strict=True):
                    stored[i].append(item)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        if self.config.extract.enqueue:  # extraction runs later, as jobs
            self.extraction.queue(item for items in stored for item in items)
        return stored

    def _write_rows(self, scope: Scope, rows: list[NewMemory]) -> list[MemoryItem]:
        """Store rows in the owner's cube; a cube erased meanwhile is created afresh."""
        for attempt in range(2):
            cube = self.cube(scope)
            if cube is None:
                return self._first_rows(scope, rows)
            try:
                return cube.add(rows)
            except CubeGoneError:
                self._cubes.discard(cube.owner)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _first_rows(self, scope: Scope, rows: list[NewMemory]) -> list[MemoryItem]:
        """A new owner: its cube is created in the transaction that writes its first rows,
        so a crash between the two can never leave an owner without memories."""
        owner_embedder = self.embedder.for_owner(str(scope.owner))  # per-owner cache
        vectors = owner_embedder.embed([row.index_text for row in rows])
        with self.store.transaction():
            cube_id = self.store.cube_id(str(scope.owner), create=True)
            assert cube_id is not None  # create=True
            items = self.store.insert(cube_id, rows, vectors)
        self.cube(scope)  # cache the new cube like any other
        return items

    def check(self, request: AddRequest) -> None:
        """Validate one add exactly as `add_batch` would, writing nothing (an import checks
        a whole file before it writes any of it)."""
        plan_at(0, request, 1, self.config.limits, self.lifecycle)

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
        cubes: Iterable[str] | None = None,
    ) -> list[SearchHit]:
        """The `k` memories most relevant to `query`, best first, of the owner's cube and
        the cubes it mounts (`cubes`: only these of them; docs/compose.md)."""
        query = check_text(query, self.config.limits.max_query_chars, "query")
        k = self._check_k(k)
        scope = Scope.of(user_id, agent_id, session_id)
        flt = build_filter(scope, types=types, since=since, until=until, filters=filters)
        return self.search_cubes(scope, cubes, query, k, flt, self.pipeline(pipeline))

    def feedback(
        self,
        query: str,
        *,
        cited: Iterable[str] = (),
        used: Iterable[str] = (),
        wrong: Iterable[str] = (),
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> FeedbackResult:
        """Report which memories an answer to `query` cited or used, and which retrieved
        ones were wrong. The owner's online reranker learns from it, so later searches rank
        memories that answered similar questions higher. All ids must belong to the owner;
        nothing is recorded unless all of them do."""
        query = check_text(query, self.config.limits.max_query_chars, "query")
        scope = Scope.of(user_id, agent_id)
        labels: dict[str, FeedbackLabel] = {}
        for label, ids in (
            (FeedbackLabel.CITED, cited),
            (FeedbackLabel.USED, used),
            (FeedbackLabel.WRONG, wrong),
        ):
            if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
                raise ValidationError(f"{label.value} must be a list of memory ids")
            for memory_id in ids:
                check_id(memory_id, f"{label.value} memory id")
                if memory_id in labels:
                    raise ValidationError(
                        f"memory {memory_id!r} is both {labels[memory_id].value} and {label.value}"
                    )
                labels[memory_id] = label
        if not labels:
            raise ValidationError("feedback needs at least one cited, used or wrong memory id")
        if len(labels) > self.config.search.max_k:
            raise ValidationError(
                f"at most {self.config.search.max_k} memory ids per feedback report"
            )
        cube = self.cube(scope)
        if cube is None:
            raise NotFoundError(f"no memory {next(iter(labels))!r} for {scope.owner}")
        for memory_id in labels:
            if self._owned(memory_id, user_id, agent_id).id != cube.id:
                raise NotFoundError(f"no memory {memory_id!r} for {scope.owner}")
        return cube.feedback(query, labels, self._reranker, self.pipeline())

    def _reason(self, reason: str | None) -> str | None:
        limit = self.config.limits.max_text_chars
        return None if reason is None else check_text(reason, limit, "reason")

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return self.config.search.default_k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.config.search.max_k:
            raise ValidationError(f"k must be an integer from 1 to {self.config.search.max_k}")
        return k

    def resolve_id(self, prefix: str) -> str:
        """The full id of the one memory (of any owner) whose id starts with `prefix`, as
        git resolves abbreviated hashes: for operators (the CLI). NotFoundError when none,
        ValidationError naming the candidates when several. The REST API and MCP take
        full ids only, so a tenant cannot probe other owners' ids."""
        check_id(prefix, "memory id")
        if self.store.locate(prefix) is not None:
            return prefix
        if len(prefix) < MIN_ID_PREFIX:
            raise NotFoundError(
                f"no memory {prefix!r} (an id prefix needs {MIN_ID_PREFIX} or more characters)"
            )
        found = self.store.ids_with_prefix(prefix, 6)
        if not found:
            raise NotFoundError(f"no memory whose id starts with {prefix!r}")
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise ValidationError(
                f"id prefix {prefix!r} is ambiguous: {shown}; give more characters"
            )
        return found[0]

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
        owner = str(scope.owner)
        after = None if cursor is None else self._cursors().decode(cursor, owner)
        cube = self.cube(scope)
        if cube is None:
            return Page(items=[])
        page, next_key = cube.page(flt, limit, after)
        sealed = None if next_key is None else self._cursors().encode(next_key, owner)
        return Page(items=page.items, next_cursor=sealed)

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
        source: str = "api",
    ) -> MemoryItem:
        """Write a new version (text re-embedded); the old one stays in `history`.
        `source` names the surface in the version record (api, cli, rest, mcp)."""
        if text is None and metadata is None:
            raise ValidationError("update needs new text, new metadata or both")
        if text is not None:
            text = check_text(text, self.config.limits.max_text_chars)
        meta = None if metadata is None else check_metadata(metadata, self.config.limits)
        reason = self._reason(reason)
        source = check_id(source, "source")
        cube = self._owned(memory_id, user_id, agent_id)
        return cube.update(memory_id, text, meta, reason, source=source)

    def delete(
        self,
        memory_id: str,
        *,
        hard: bool = False,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        source: str = "api",
    ) -> DeleteResult:
        """Archive a memory (restorable); `hard=True` erases it and its history (GDPR)
        from every tier: its text, every KV block built from it and every adapter version
        that learned it. Returns what happened, in the words every surface uses."""
        hard = check_flag(hard, "hard")
        source = check_id(source, "source")
        reason = self._reason(reason)
        cube = self._owned(memory_id, user_id, agent_id)
        if hard:
            cube.purge(memory_id)
            self._cubes.discard(cube.owner)  # erased when it was the owner's last memory
        else:
            cube.archive(memory_id, reason, source)
        return DeleteResult(id=memory_id, deleted="erased" if hard else "archived")

    def restore(
        self,
        memory_id: str,
        *,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        source: str = "api",
    ) -> MemoryItem:
        """Bring an archived memory back; records a 'restore' version."""
        reason = self._reason(reason)
        source = check_id(source, "source")
        cube = self._owned(memory_id, user_id, agent_id)
        cube.restore(memory_id, reason, source)
        return cube.get(memory_id)

    def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        hard: bool = False,
    ) -> int:
        """Archive (or with `hard=True` erase, from every tier) all of an owner's memories;
        returns the count. Erasing an owner's last memories erases the owner too."""
        hard = check_flag(hard, "hard")
        scope = Scope.of(user_id, agent_id, session_id)
        flt = build_filter(scope, include_archived=hard)
        cube = self.cube(scope)
        if cube is None:
            return 0
        if not hard:
            return cube.archive_where(flt, "delete_all")
        erased = cube.purge_where(flt)
        self._cubes.discard(cube.owner)
        return erased

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
        self.extraction.close()  # the worker finishes its current job; queued ones stay
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
