"""What callers reported about search results: per cube, the queries they gave feedback on
and, for each, the memories they cited, used or marked wrong. Read as one immutable log,
cached by the cube's feedback revision."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class FeedbackLabel(StrEnum):
    CITED = "cited"  # the answer cited this memory
    USED = "used"  # the answer used it without citing it
    WRONG = "wrong"  # it was retrieved but wrong or unhelpful for the query


@dataclass(frozen=True)
class FeedbackEvent:
    """One (query, memory, label) report about to be written."""

    key: int
    label: FeedbackLabel


@dataclass
class FeedbackLog:
    """Every feedback query of one cube (text + unit vector) and its events, in order."""

    rev: int
    queries: list[str]
    vectors: np.ndarray  # float32 (queries, dim)
    query_of: np.ndarray  # int64 per event: index into queries
    keys: np.ndarray  # int64 per event: memory key
    labels: np.ndarray  # object per event: FeedbackLabel value
    weights: dict[str, float] | None = None  # the cube's reranker, when trained
    events_trained: int = 0
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def empty(cls, dim: int) -> FeedbackLog:
        return cls(
            rev=0,
            queries=[],
            vectors=np.zeros((0, dim), dtype=np.float32),
            query_of=np.zeros(0, dtype=np.int64),
            keys=np.zeros(0, dtype=np.int64),
            labels=np.zeros(0, dtype=object),
        )

    def __len__(self) -> int:
        return len(self.keys)

    def derive(self, name: str, build: Callable[[], Any]) -> Any:
        """A structure built once per log (the log is replaced when feedback changes)."""
        with self._lock:
            if name not in self.derived:
                self.derived[name] = build()
            return self.derived[name]
