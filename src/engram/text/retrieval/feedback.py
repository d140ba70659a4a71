"""Learning from use (RMM's retrospective reflection): memories that callers cited for
earlier queries are boosted for new queries that resemble those queries.

Four features per memory, computed from the cube's feedback log before the query:

- `cited`: log(1 + times the memory was cited or used);
- `similar`: how close the query is to the closest earlier query that cited the memory
  (cosine above a floor of 0.3, else 0);
- `lexical`: IDF-weighted overlap between the query's terms and the terms of the earlier
  queries that cited the memory (the memory is "expanded" with the questions it answered);
- `wrong`: minus the `similar` feature over queries for which the memory was marked wrong.

The owner's reranker (`engram.text.reranker`, `search.reranker`) learns one weight per
feature; the signal is their weighted sum, added as is (calibrated) to the pipeline's score.
An owner with no feedback gets zeros: search is unchanged until feedback arrives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engram.store.feedback import FeedbackLabel, FeedbackLog
from engram.store.vector_index import CubeSnapshot
from engram.text.query import query_terms
from engram.text.retrieval.base import QueryContext
from engram.text.retrieval.scorer import Scorer

FEATURES = ("cited", "similar", "lexical", "wrong")
DEFAULT_WEIGHTS: dict[str, float] = {"cited": 1.0, "similar": 6.0, "lexical": 0.2, "wrong": 6.0}
SIMILARITY_FLOOR = 0.3
POSITIVE = (FeedbackLabel.CITED.value, FeedbackLabel.USED.value)


@dataclass(frozen=True)
class _Terms:
    """Per positive memory key, the set of terms of the queries that cited it."""

    keys: dict[str, np.ndarray]  # term -> memory keys whose citing queries contain it
    memories: int  # distinct memories with positive feedback


def _positive_terms(log: FeedbackLog) -> _Terms:
    by_term: dict[str, set[int]] = {}
    positive = np.isin(log.labels, POSITIVE)
    terms_of = [set(query_terms(q)) for q in log.queries]
    for query, key in zip(log.query_of[positive], log.keys[positive], strict=True):
        for term in terms_of[query]:
            by_term.setdefault(term, set()).add(int(key))
    return _Terms(
        keys={t: np.fromiter(sorted(k), dtype=np.int64) for t, k in by_term.items()},
        memories=len(set(log.keys[positive].tolist())),
    )


def snapshot_rows(snap: CubeSnapshot, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Snapshot rows of `keys` and a mask of the keys that are in the snapshot (active)."""
    if len(snap) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    rows = np.minimum(np.searchsorted(snap.keys, keys), len(snap) - 1)
    return rows, snap.keys[rows] == keys


def feedback_features(
    log: FeedbackLog, snap: CubeSnapshot, vector: np.ndarray, query: str
) -> np.ndarray:
    """(rows, len(FEATURES)) float64 features of every snapshot row for this query."""
    n = len(snap)
    out = np.zeros((n, len(FEATURES)))
    if len(log) == 0 or n == 0:
        return out
    rows, present = snapshot_rows(snap, log.keys)
    closeness = np.maximum(log.vectors @ vector - SIMILARITY_FLOOR, 0.0)[log.query_of]
    positive = np.isin(log.labels, POSITIVE) & present
    wrong = (log.labels == FeedbackLabel.WRONG.value) & present
    np.add.at(out[:, 0], rows[positive], 1.0)
    out[:, 0] = np.log1p(out[:, 0])
    similar = np.zeros(n)
    np.maximum.at(similar, rows[positive], closeness[positive])
    out[:, 1] = similar
    terms = log.derive("positive-terms", lambda: _positive_terms(log))
    lexical = np.zeros(n)
    for term in set(query_terms(query)):
        keys = terms.keys.get(term)
        if keys is None:
            continue
        term_rows, term_present = snapshot_rows(snap, keys)
        lexical[term_rows[term_present]] += math.log(1.0 + terms.memories / len(keys))
    out[:, 2] = lexical
    penalty = np.zeros(n)
    np.maximum.at(penalty, rows[wrong], closeness[wrong])
    out[:, 3] = -penalty
    return out


def weight_vector(weights: dict[str, float] | None) -> np.ndarray:
    chosen = weights or DEFAULT_WEIGHTS
    return np.array([chosen.get(name, DEFAULT_WEIGHTS[name]) for name in FEATURES])


@dataclass(frozen=True)
class FeedbackSignal(Scorer):
    """The owner's reranker applied to the feedback features (zeros without feedback)."""

    calibrated = True
    learns_from_feedback = True

    def score(self, ctx: QueryContext) -> np.ndarray:
        log = ctx.store.feedback(ctx.cube)
        if len(log) == 0:
            return np.zeros(len(ctx.snapshot))
        features = feedback_features(log, ctx.snapshot, ctx.vector, ctx.query)
        return features @ weight_vector(log.weights)
