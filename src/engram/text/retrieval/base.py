"""The retriever contract: a query context in, scored store keys out (higher is better)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engram.store.base import CandidateSearch, MemoryFilter, Scored, Store
from engram.store.vector_index import CubeSnapshot
from engram.text.query import query_terms

if TYPE_CHECKING:
    from engram.text.retrieval.scorer import Scorer


@dataclass
class QueryContext:
    """Everything a strategy may need. The query vector and the cube snapshot are computed
    at most once, on demand; strategies share intermediate results through `memo`."""

    store: Store
    cube: int
    query: str
    flt: MemoryFilter
    embed: Callable[[str], np.ndarray]
    candidates: int = 100
    _vector: np.ndarray | None = field(default=None, repr=False)
    _snapshot: CubeSnapshot | None = field(default=None, repr=False)
    _memo: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    @property
    def vector(self) -> np.ndarray:
        if self._vector is None:
            # float32 like every snapshot matrix: a float64 query made numpy convert the
            # whole matrix on each product (56 ms instead of 3 for 100,000 memories)
            self._vector = np.asarray(self.embed(self.query), dtype=np.float32)
        return self._vector

    @property
    def snapshot(self) -> CubeSnapshot:
        """The rows this search scores: the whole cube, or for a large cube in a store that
        finds candidates itself (PostgreSQL), the candidates for this query."""
        if self._snapshot is None:
            if isinstance(self.store, CandidateSearch):
                self._snapshot = self.store.search_snapshot(
                    self.cube, self.terms, lambda: self.vector, self.flt
                )
            else:
                self._snapshot = self.store.snapshot(self.cube)
        return self._snapshot

    @property
    def terms(self) -> list[str]:
        return query_terms(self.query)

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


class Retriever(ABC):
    """One retrieval strategy. Wrappers (fusion, reordering) are retrievers too."""

    name: str = "retriever"

    @abstractmethod
    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        """The best `k` keys for the query, best first."""

    def feedback_base(self) -> tuple[Scorer, float] | None:
        """What the owner's reranker learns on top of: this pipeline's score without its
        feedback part, and the weight that part is summed with; None when the pipeline has
        no feedback part (feedback is then recorded, and no reranker step is taken)."""
        return None
