"""MemCube: one owner's memories. The text tier lives here; other tiers plug in beside it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engram.embed.base import Embedder
from engram.errors import NotFoundError
from engram.store.base import Change, MemoryFilter, NewMemory, Store
from engram.store.feedback import FeedbackEvent, FeedbackLabel, FeedbackLog
from engram.text.access import AccessRecorder
from engram.text.ingest import index_text
from engram.text.reranker import Reranker
from engram.text.retrieval import QueryContext, Retriever
from engram.text.retrieval.feedback import (
    FEATURES,
    feedback_features,
    snapshot_rows,
    weight_vector,
)
from engram.text.retrieval.scorer import Scorer
from engram.text.tier import TextTier
from engram.tiers import Tier
from engram.types import (
    CubeStats,
    FeedbackResult,
    MemoryItem,
    MemoryState,
    Page,
    SearchHit,
    Version,
    VersionEvent,
)

if TYPE_CHECKING:
    from engram.lifecycle.core import Lifecycle


@dataclass
class MemCube:
    """All memories of one owner (e.g. 'user:alice'), strictly apart from every other cube."""

    owner: str
    id: int
    store: Store
    embedder: Embedder
    access: AccessRecorder | None = None
    lifecycle: Lifecycle | None = None  # retention: feedback strengthens what was recalled
    derived: tuple[Tier[Any, Any], ...] = ()  # tiers built from the text: activation, parametric

    # -- tiers ------------------------------------------------------------------------

    @property
    def text(self) -> TextTier:
        return TextTier(self)

    @property
    def tiers(self) -> dict[str, Tier[Any, Any]]:
        """Every tier of the cube by name: text first, then those built from it."""
        return {tier.name: tier for tier in (self.text, *self.derived)}

    def erase(self, memory_ids: Sequence[str]) -> int:
        """Erase memories from every tier: first what was built from them (KV blocks,
        adapter versions), then the text, so a failure part-way leaves the text to retry
        with; then the derived tiers once more, for a build that recorded itself meanwhile
        (a build checks its memories still exist after recording). Returns how many
        memories the text tier erased."""
        for tier in self.derived:
            tier.forget(memory_ids)
        erased = len(self.text.forget(memory_ids))
        for tier in self.derived:
            tier.forget(memory_ids)
        return erased

    # -- text tier --------------------------------------------------------------------

    def add(self, rows: list[NewMemory]) -> list[MemoryItem]:
        vectors = self.embedder.embed([row.index_text for row in rows])
        return self.store.insert(self.id, rows, vectors)

    def search(
        self, query: str, k: int, flt: MemoryFilter, pipeline: Retriever, candidates: int
    ) -> list[SearchHit]:
        ctx = QueryContext(
            self.store, self.id, query, flt, self.embedder.embed_one, candidates=candidates
        )
        ranked = pipeline.retrieve(ctx, k)
        items = self.store.by_keys(self.id, [s.key for s in ranked])
        if self.access is not None:
            self.access.record(self.id, [s.key for s in ranked])
        kept = [s for s in ranked if s.key in items]
        relevance = self._relevance(ctx, [s.key for s in kept])
        return [
            SearchHit.of(items[s.key], s.score, float(r))
            for s, r in zip(kept, relevance, strict=True)
        ]

    @staticmethod
    def _relevance(ctx: QueryContext, keys: list[int]) -> np.ndarray:
        """Cosine of the query and each memory, clipped to [0, 1]: an absolute scale,
        unlike the ranking score. Read from the search's own snapshot (no second query)."""
        snap = ctx.snapshot
        rows, present = snapshot_rows(snap, np.asarray(keys, dtype=np.int64))
        if not present.any():
            return np.zeros(len(keys))
        cosines = np.where(present, snap.matrix[rows] @ ctx.vector, 0.0)
        return np.clip(cosines, 0.0, 1.0)

    def feedback(
        self,
        query: str,
        labels: dict[str, FeedbackLabel],
        reranker: Reranker,
        pipeline: Retriever,
    ) -> FeedbackResult:
        """Record which memories helped (or were wrong) for `query` and take one reranker
        step on top of `pipeline`'s score without feedback; features come from the log
        before this report, as at search time. A pipeline without a feedback part only
        records the report (the weights stay as they are)."""
        keys = {self._key(memory_id): label for memory_id, label in labels.items()}
        ctx = QueryContext(self.store, self.id, query, MemoryFilter(), self.embedder.embed_one)
        log = self.store.feedback(self.id)
        learned = pipeline.feedback_base()
        weights: dict[str, float] | None = None
        if learned is not None:
            weights = self._rerank_step(ctx, log, keys, reranker, *learned)
        events = [FeedbackEvent(key, label) for key, label in keys.items()]
        self.store.add_feedback(self.id, query, ctx.vector, events, weights)
        if self.lifecycle is not None:
            self.lifecycle.on_feedback(self.id, keys)
        if weights is None:  # recorded only: the owner's weights stay as they were
            weights = dict(zip(FEATURES, weight_vector(log.weights).tolist(), strict=True))
        return FeedbackResult(owner=self.owner, recorded=len(events), weights=weights)

    def _rerank_step(
        self,
        ctx: QueryContext,
        log: FeedbackLog,
        keys: dict[int, FeedbackLabel],
        reranker: Reranker,
        base: Scorer,
        weight: float,
    ) -> dict[str, float]:
        """One reranker step on top of `base`, the pipeline's score without its feedback part
        (summed with `weight`); features come from the log before this report."""
        snap = ctx.snapshot
        features = feedback_features(log, snap, ctx.vector, ctx.query)
        labelled = np.fromiter(keys, dtype=np.int64, count=len(keys))
        rows, active = snapshot_rows(snap, labelled)  # archived memories have no row

        def of(*wanted: FeedbackLabel) -> np.ndarray:
            chosen = np.array([keys[int(key)] in wanted for key in labelled], dtype=bool)
            return rows[active & chosen]

        return reranker.update(
            log.weights,
            base(ctx),
            weight * features,
            of(FeedbackLabel.CITED, FeedbackLabel.USED),
            of(FeedbackLabel.WRONG),
        )

    def _key(self, memory_id: str) -> int:
        found = self.store.locate(memory_id)
        if found is None or found.cube != self.id:
            raise NotFoundError(f"no memory {memory_id!r} for {self.owner}")
        return found.key

    def get(self, memory_id: str) -> MemoryItem:
        key = self._key(memory_id)
        item = self.store.by_keys(self.id, [key]).get(key)
        if item is None:
            raise NotFoundError(f"no memory {memory_id!r} for {self.owner}")
        return item

    def page(self, flt: MemoryFilter, limit: int, after: int | None) -> tuple[Page, int | None]:
        items, next_key = self.store.page(self.id, flt, limit, after)
        return Page(items=items), next_key

    def iter_all(self, flt: MemoryFilter, batch: int = 500) -> Iterator[MemoryItem]:
        after: int | None = None
        while True:
            items, after = self.store.page(self.id, flt, batch, after)
            yield from items
            if after is None:
                return

    def update(
        self,
        memory_id: str,
        text: str | None,
        metadata: dict[str, Any] | None,
        reason: str | None,
        event: VersionEvent = VersionEvent.UPDATE,
        source: str = "api",
    ) -> MemoryItem:
        key = self._key(memory_id)
        current = self.get(memory_id)
        change = Change(event=event, metadata=metadata, reason=reason, source=source)
        if text is not None and text != current.memory:
            new_index = index_text(text, current.provenance.name)
            change = Change(
                event=event,
                text=text,
                index_text=new_index,
                vector=self.embedder.embed_one(new_index),
                metadata=metadata,
                reason=reason,
                source=source,
            )
        try:
            return self.store.change(self.id, key, change)
        except NotFoundError as err:  # erased while this update was being prepared
            raise NotFoundError(f"no memory {memory_id!r} for {self.owner}") from err

    def archive(self, memory_id: str, reason: str | None, source: str = "api") -> int:
        key = self._key(memory_id)
        return self.store.set_state(
            self.id, [key], MemoryState.ARCHIVED, VersionEvent.DELETE, reason, source
        )

    def restore(self, memory_id: str, reason: str | None, source: str = "api") -> int:
        key = self._key(memory_id)
        return self.store.set_state(
            self.id, [key], MemoryState.ACTIVE, VersionEvent.RESTORE, reason, source
        )

    def purge(self, memory_id: str) -> int:
        """Erase one memory from every tier."""
        self._key(memory_id)  # NotFoundError when not this cube's
        return self.erase([memory_id])

    def archive_where(self, flt: MemoryFilter, reason: str | None) -> int:
        keys = self.store.keys(self.id, flt)
        return self.store.set_state(
            self.id, keys, MemoryState.ARCHIVED, VersionEvent.DELETE, reason
        )

    def purge_where(self, flt: MemoryFilter) -> int:
        """Erase the matching memories from every tier (derived tiers first, as `erase`)."""
        keys = self.store.keys(self.id, flt)
        ids = [item.id for item in self.store.by_keys(self.id, keys).values()]
        for tier in self.derived:
            tier.forget(ids)
        erased = self.erase_keys(keys)
        for tier in self.derived:  # as in `erase`
            tier.forget(ids)
        return erased

    def erase_keys(self, keys: list[int]) -> int:
        """The text tier's erasure: rows, versions, index entries, vectors (store.purge)."""
        erased = self.store.purge(self.id, keys)
        if self.access is not None:
            self.access.forget(self.id, keys)
        return erased

    def known_sources(self, source_ids: list[str]) -> set[str]:
        """Those of `source_ids` already stored here (as a source id or a memory id)."""
        return self.store.known_sources(self.id, source_ids)

    def history(self, memory_id: str) -> list[Version]:
        return self.store.history(self.id, self._key(memory_id))

    def stats(self) -> CubeStats:
        try:
            return self.store.stats(self.id)
        except NotFoundError as err:  # every memory was erased meanwhile
            raise NotFoundError(f"no memories for {self.owner}") from err


class CubeCache:
    """The most recently used MemCubes by owner, at most `capacity` (a server meets
    unboundedly many owners). Entries are checked against the store's cube id on use."""

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self._cubes: OrderedDict[str, MemCube] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, owner: str, cube_id: int) -> MemCube | None:
        with self._lock:
            cube = self._cubes.get(owner)
            if cube is None or cube.id != cube_id:
                return None
            self._cubes.move_to_end(owner)
            return cube

    def put(self, cube: MemCube) -> MemCube:
        with self._lock:
            current = self._cubes.get(cube.owner)
            if current is not None and current.id == cube.id:
                cube = current  # another thread got there first: keep one object per cube
            self._cubes[cube.owner] = cube
            self._cubes.move_to_end(cube.owner)
            while len(self._cubes) > self.capacity:
                self._cubes.popitem(last=False)
            return cube

    def discard(self, owner: str) -> None:
        with self._lock:
            self._cubes.pop(owner, None)

    def __len__(self) -> int:
        return len(self._cubes)
