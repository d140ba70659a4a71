"""Signals over a cube snapshot: per-cube BM25 at several units, dense cosine, speaker
mention, query dates vs memory times."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from engram.text.retrieval.base import QueryContext
from engram.text.retrieval.lexicon import (
    Lexicon,
    query_tokens,
    session_documents,
    window_documents,
)
from engram.text.retrieval.scorer import Scorer
from engram.text.timeexpr import days, time_ranges


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


@dataclass(frozen=True)
class LexicalSignal(Scorer):
    """BM25 with per-cube statistics over a unit: the turn itself ("turn"), the turn with
    `before`/`after` neighbours in its session ("window"), or its whole session as one
    document ("session"). Window and session units are NaN (not applicable) for memories
    without a session."""

    unit: str = "turn"
    before: int = 1
    after: int = 1
    k1: float = 1.2
    b: float = 0.75

    def score(self, ctx: QueryContext) -> np.ndarray:
        snap = ctx.snapshot
        lex = Lexicon.of(snap)
        terms = query_tokens(ctx.query)
        if self.unit == "turn":
            return lex.bm25(terms, lex.rows, self.k1, self.b)
        scores: np.ndarray | float  # 0.0: no session documents at all
        if self.unit == "window":
            docs = window_documents(snap, self.before, self.after)
            scores = lex.bm25(terms, docs, self.k1, self.b)
        else:
            per_session = lex.bm25(terms, session_documents(snap), self.k1, self.b)
            scores = per_session[np.maximum(snap.sessions, 0)] if len(per_session) else 0.0
        return np.where(snap.sessions >= 0, scores, np.nan)


_TEMPORAL_WORDS = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|last|next|ago|week|weekend|month|year|monday|"
    r"tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|may|"
    r"june|july|august|september|october|november|december|since|recently|(?:19|20)\d\d)\b",
    re.I,
)
_COUNT_WORDS = re.compile(
    r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|twice|once)\b", re.I
)


@dataclass(frozen=True)
class AnswerTypeSignal(Scorer):
    """Question-type understanding without an LLM: a "when" question prefers memories that
    say when (time words, dates); "how many / long / often" prefers memories with numbers.
    All zero for other questions."""

    calibrated = True

    def score(self, ctx: QueryContext) -> np.ndarray:
        question = ctx.query.lower().lstrip()
        if question.startswith("when"):
            kind, pattern = "time", _TEMPORAL_WORDS
        elif question.startswith(("how many", "how long", "how often", "how much")):
            kind, pattern = "count", _COUNT_WORDS
        else:
            return np.zeros(len(ctx.snapshot))
        texts = ctx.snapshot.texts
        return ctx.snapshot.derive(
            f"answer-type:{kind}",
            lambda: np.asarray([1.0 if pattern.search(t) else 0.0 for t in texts]),
        )
