"""The default pipeline: multi-granularity hybrid scoring, without an LLM.

Every active memory of the cube gets a weighted sum of standardised signals. Weights are
round numbers chosen on LoCoMo-format data by ablation (docs/benchmarks.md); a logistic
regression over the same signals, fitted on half of the conversations, did not beat them
on the other half. `hybrid-no-<part>` pipelines drop one part each, for ablations.
"""

from __future__ import annotations

from engram.text.retrieval.context import SessionSignal, WindowSignal
from engram.text.retrieval.feedback import FeedbackSignal
from engram.text.retrieval.scorer import Scorer, ScoringRetriever, WeightedSum
from engram.text.retrieval.signals import (
    AnswerTypeSignal,
    DenseSignal,
    LexicalSignal,
    SpeakerSignal,
    TimeSignal,
)

HYBRID_PARTS: dict[str, tuple[Scorer, float]] = {
    # a turn with two turns before it and one after: answers inherit their question's words
    "window-bm25": (LexicalSignal("window", before=2, after=1), 1.5),
    "turn-bm25": (LexicalSignal("turn"), 0.5),
    "session-bm25": (LexicalSignal("session"), 0.5),
    "turn-dense": (DenseSignal(), 1.0),
    "window-dense": (WindowSignal(DenseSignal(), radius=2), 1.0),
    "session-dense": (SessionSignal(DenseSignal(), reduce="max"), 0.5),
    # calibrated 0..1 signals, weighted in z units
    "time": (TimeSignal(), 4.0),
    "speaker": (SpeakerSignal(), 0.5),
    "answer-type": (AnswerTypeSignal(), 3.0),
    # the owner's online reranker over feedback features; zeros until feedback arrives
    "feedback": (FeedbackSignal(), 1.0),
}


def hybrid(without: str | None = None) -> ScoringRetriever:
    parts = tuple(part for name, part in HYBRID_PARTS.items() if name != without)
    label = "hybrid" if without is None else f"hybrid-no-{without}"
    return ScoringRetriever(WeightedSum(parts), name=label)


def base_scorer() -> WeightedSum:
    """The hybrid score without the feedback part: what the online reranker learns on top of."""
    return WeightedSum(tuple(part for name, part in HYBRID_PARTS.items() if name != "feedback"))
