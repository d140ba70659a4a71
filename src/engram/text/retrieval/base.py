"""The retriever contract: a query context in, scored store keys out (higher is better)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engram.store.base import MemoryFilter, Scored, Store
from engram.text.query import query_terms


@dataclass
class QueryContext:
    """Everything a retriever may need; the query vector is computed at most once, on demand."""

    store: Store
    cube: int
    query: str
    flt: MemoryFilter
    embed: Callable[[str], np.ndarray]
    candidates: int = 100
    _vector: np.ndarray | None = field(default=None, repr=False)

    @property
    def vector(self) -> np.ndarray:
        if self._vector is None:
            self._vector = self.embed(self.query)
        return self._vector

    @property
    def terms(self) -> list[str]:
        return query_terms(self.query)


class Retriever(ABC):
    """One retrieval strategy. Wrappers (fusion, reordering) are retrievers too."""

    name: str = "retriever"

    @abstractmethod
    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        """The best `k` keys for the query, best first."""
