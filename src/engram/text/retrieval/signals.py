"""Base signals over a cube snapshot: BM25 (FTS5), dense cosine, speaker mention."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from engram.store.base import MemoryFilter
from engram.text.retrieval.base import QueryContext
from engram.text.retrieval.scorer import Scorer
from engram.text.timeexpr import days, time_ranges

_ALL = MemoryFilter()


@dataclass(frozen=True)
class BM25Signal(Scorer):
    """BM25 of every matching memory (FTS5); memories without a query term score 0."""

    def score(self, ctx: QueryContext) -> np.ndarray:
        snap = ctx.snapshot
        out = np.zeros(len(snap))
        hits = ctx.store.lexical(ctx.cube, ctx.terms, max(len(snap), 1), _ALL)
        if hits:
            keys = np.asarray([h.key for h in hits], dtype=np.int64)
            rows = snap.rows(keys)
            ok = (rows < len(snap)) & (snap.keys[np.minimum(rows, len(snap) - 1)] == keys)
            out[rows[ok]] = np.asarray([h.score for h in hits])[ok]
        return out


@dataclass(frozen=True)
class DenseSignal(Scorer):
    """Cosine similarity between the query and each memory's embedding."""

    def score(self, ctx: QueryContext) -> np.ndarray:
        return (ctx.snapshot.matrix @ ctx.vector).astype(np.float64)


@dataclass(frozen=True)
class SpeakerSignal(Scorer):
    """1 for memories said by someone the query names ("what did Maya ..."), else 0."""

    calibrated = True

    def score(self, ctx: QueryContext) -> np.ndarray:
        snap = ctx.snapshot
        words = set(re.findall(r"\w+", ctx.query.lower()))
        names = {n for n in set(snap.speakers) if n and set(n.split()) & words}
        if not names:
            return np.zeros(len(snap))
        return np.isin(snap.speakers, list(names)).astype(np.float64)


@dataclass(frozen=True)
class TimeSignal(Scorer):
    """Closeness of each memory's time to the dates the query names ("on 9 May, 2023",
    "in August 2022"): 1 inside [start, end + after_days], decaying by `tau_days` outside.
    All zero when the query names no date."""

    after_days: float = 10.0
    tau_days: float = 10.0
    calibrated = True

    def score(self, ctx: QueryContext) -> np.ndarray:
        times = ctx.snapshot.times
        best = np.zeros(len(times))
        for start, end in time_ranges(ctx.query):
            lo, hi = days(start), days(end) + 1 + self.after_days
            gap = np.maximum(lo - times, 0) + np.maximum(times - hi, 0)
            best = np.maximum(best, np.exp(-gap / self.tau_days))
        return best
