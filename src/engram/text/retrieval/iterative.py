"""Iterative retrieval without an LLM (the idea of Adaptive-Note / RetroRAG): a first round
ranks the cube; its top hits are read as notes; a second round re-queries with what the
notes reveal — their centroid in embedding space — and fills the tail of the list with
memories the first round missed, keeping the first round's head as it was. It stops after
the second round, or at once when the cube is smaller than k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engram.store.base import Scored
from engram.store.vector_index import top_k
from engram.text.retrieval.base import QueryContext, Retriever
from engram.text.retrieval.scorer import Scorer, filter_mask, zscore


@dataclass
class IterativeRetriever(Retriever):
    scorer: Scorer
    keep: float = 0.7  # share of k taken from the first round, unchanged
    notes: int = 3  # first-round hits read as notes
    weight: float = 1.0  # weight of the notes' centroid similarity in the second round
    name: str = "iterative"

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        snap = ctx.snapshot
        if len(snap) == 0:
            return []
        mask = filter_mask(ctx)
        scores = self.scorer(ctx)
        first = top_k(snap.keys, scores, k, mask)
        head = first[: max(1, round(k * self.keep))]
        if len(first) < k or len(head) >= k:
            return [Scored(key, score) for key, score in first]
        rows = np.searchsorted(snap.keys, [key for key, _ in first[: self.notes]])
        centroid = snap.matrix[rows].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        second = scores + self.weight * zscore((snap.matrix @ centroid).astype(np.float64))
        taken = {key for key, _ in head}
        tail = [key for key, _ in top_k(snap.keys, second, 2 * k, mask) if key not in taken]
        tail = tail[: k - len(head)]
        # report first-round scores: every tail memory scored below the head there, so the
        # list stays ordered by the score it shows
        tail_rows = np.searchsorted(snap.keys, tail)
        ranked_tail = sorted(
            (Scored(int(snap.keys[r]), float(scores[r])) for r in tail_rows),
            key=lambda s: -s.score,
        )
        return [Scored(key, score) for key, score in head] + ranked_tail

    def feedback_base(self) -> tuple[Scorer, float] | None:
        """The first round's scorer; the notes' centroid is not learned."""
        return self.scorer.feedback_base()
