"""Scorers give every active memory of a cube a score at once (an array over the cube
snapshot's rows). They compose by wrapping — a window or session scorer wraps another
scorer — and `ScoringRetriever` turns the final array into a ranked list."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from engram.store.base import Scored
from engram.store.vector_index import top_k
from engram.text.retrieval.base import QueryContext, Retriever


class Scorer(ABC):
    """One signal over all rows. Subclasses are frozen dataclasses (hashable memo keys).
    A `calibrated` signal is already on a 0..1 scale and is summed as is, not standardised."""

    calibrated = False
    learns_from_feedback = False  # the owner's reranker applied to feedback features

    def feedback_base(self) -> tuple[Scorer, float] | None:
        """See `Retriever.feedback_base`; None: this scorer has no feedback part."""
        return None

    def __call__(self, ctx: QueryContext) -> np.ndarray:
        return ctx.memo(self, lambda: self.score(ctx))

    @abstractmethod
    def score(self, ctx: QueryContext) -> np.ndarray:
        """float64 array of len(ctx.snapshot); higher is more relevant; NaN where the signal
        does not apply to a row."""


def zscore(values: np.ndarray) -> np.ndarray:
    """Standardise over the defined (non-NaN) rows; NaN rows stay NaN."""
    defined = values[~np.isnan(values)]
    if len(defined) == 0:
        return values
    sd = float(defined.std())
    return (values - defined.mean()) / (sd if sd > 0 else 1.0)


@dataclass(frozen=True)
class WeightedSum(Scorer):
    """Sum of standardised signals: z(s_1) * w_1 + z(s_2) * w_2 + ..."""

    parts: tuple[tuple[Scorer, float], ...]

    def score(self, ctx: QueryContext) -> np.ndarray:
        """A standardised part that is undefined for a row (NaN: no session to form a window
        or session from) is left out for that row, and the row's other standardised weights
        are scaled up to the same total; calibrated parts are added as they are."""
        n = len(ctx.snapshot)
        calibrated, standard, used = np.zeros(n), np.zeros(n), np.zeros(n)
        full = 0.0
        for scorer, weight in self.parts:
            if not weight:
                continue
            values = scorer(ctx)
            if scorer.calibrated:
                calibrated += weight * np.nan_to_num(values)
                continue
            full += weight
            values = zscore(values)
            defined = ~np.isnan(values)
            standard[defined] += weight * values[defined]
            used[defined] += weight
        scale = np.where(used > 0, full / np.maximum(used, 1e-12), 0.0)
        return calibrated + standard * scale

    def feedback_base(self) -> tuple[Scorer, float] | None:
        """The sum without its (calibrated) feedback parts, and their total weight."""
        learned = [w for s, w in self.parts if s.learns_from_feedback and w]
        if not learned:
            return None
        rest = tuple(part for part in self.parts if not part[0].learns_from_feedback)
        return WeightedSum(rest), float(sum(learned))


@dataclass
class ScoringRetriever(Retriever):
    """Ranks a cube's memories by a scorer; the search filter masks rows out."""

    scorer: Scorer
    name: str = "scored"

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        snap = ctx.snapshot
        if len(snap) == 0:
            return []
        scores = self.scorer(ctx)
        return [Scored(key, score) for key, score in top_k(snap.keys, scores, k, filter_mask(ctx))]

    def feedback_base(self) -> tuple[Scorer, float] | None:
        return self.scorer.feedback_base()


def filter_mask(ctx: QueryContext) -> np.ndarray | None:
    """Which snapshot rows the search filter lets through (None: all of them)."""
    if ctx.flt.is_trivial:
        return None
    return np.isin(ctx.snapshot.keys, np.asarray(ctx.store.keys(ctx.cube, ctx.flt)))
