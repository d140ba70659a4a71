"""Multi-granularity signals (RMM's prospective reflection, without an LLM): a memory is
also judged by its neighbourhood in the conversation and by its whole session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engram.text.retrieval.base import QueryContext
from engram.text.retrieval.lexicon import window_group
from engram.text.retrieval.scorer import Scorer


@dataclass(frozen=True)
class WindowSignal(Scorer):
    """Mean of the wrapped signal over a turn and its `radius` neighbours on each side
    within the same session: a turn that answers a question inherits the question's words.
    Memories without a session get NaN (not applicable)."""

    base: Scorer
    radius: int = 1

    def score(self, ctx: QueryContext) -> np.ndarray:
        group = window_group(ctx.snapshot, self.radius, self.radius)
        mean = (group @ self.base(ctx)) / np.asarray(group.sum(axis=1)).ravel()
        return np.where(ctx.snapshot.sessions >= 0, mean, np.nan)


@dataclass(frozen=True)
class SessionSignal(Scorer):
    """Each memory gets its session's aggregate of the wrapped signal (max or mean)."""

    base: Scorer
    reduce: str = "max"

    def score(self, ctx: QueryContext) -> np.ndarray:
        values = self.base(ctx)
        sessions = ctx.snapshot.sessions
        out = np.full(len(values), np.nan)  # no session: the signal does not apply
        has = sessions >= 0
        if not has.any():
            return out
        codes = sessions[has]
        n = int(codes.max()) + 1
        if self.reduce == "mean":
            sums = np.bincount(codes, weights=values[has], minlength=n)
            agg = sums / np.maximum(np.bincount(codes, minlength=n), 1)
        else:
            agg = np.full(n, -np.inf)
            np.maximum.at(agg, codes, values[has])
        out[has] = agg[codes]
        return out
