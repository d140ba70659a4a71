"""Topic summaries (RMM's topic granularity): an owner's turns clustered by embedding
(spherical k-means, deterministic), each cluster named by its most distinctive words and
summarised by the turns nearest its centre. Re-clustered when the owner's turns have grown
by a quarter since the last run, so topics do not churn on every add."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from engram.extract.base import Derived, ExtractionContext, Extractor, Plan, Retirement
from engram.extract.extractive import mmr, quote
from engram.text.query import query_terms
from engram.types import MemoryState, MemoryType

GROWTH = 1.25  # re-cluster once the turns grew by this factor
KEYWORDS = 5


class TopicSummary(Extractor):
    name = "topic-summary"
    scope = "cube"

    def plan(self, ctx: ExtractionContext) -> Plan:
        turns = ctx.memories(session=False)
        n = len(turns)
        if n < ctx.config.topic_min_turns:
            return Plan(note=f"{n} turns, fewer than {ctx.config.topic_min_turns}")
        existing = ctx.derived(self.name, (MemoryType.SUMMARY.value,))
        active = [m for m in existing.values() if m.state is MemoryState.ACTIVE]
        last = max((int(m.metadata.get("cube_turns", 0)) for m in active), default=0)
        if last and n < last * GROWTH:
            return Plan(note=f"{n} turns; topics were built over {last}")
        k = max(2, round(n / ctx.config.topic_size))
        labels = kmeans(turns.vectors, k)
        clusters = [np.flatnonzero(labels == c) for c in range(k)]
        clusters = sorted((c for c in clusters if len(c) >= 2), key=lambda c: int(c[0]))
        words = _keywords([[turns.items[i].memory for i in c] for c in clusters])
        plan = Plan()
        for t, (rows, names) in enumerate(zip(clusters, words, strict=True)):
            picked = [
                turns.items[rows[i]] for i in mmr(turns.vectors[rows], ctx.config.summary_turns)
            ]
            text = f"Topic: {', '.join(names)}. " + " … ".join(quote(p) for p in picked)
            plan.derived.append(
                Derived(
                    text=text,
                    type=MemoryType.SUMMARY.value,
                    sources=picked,
                    key=f"{self.name}:{t}",
                    metadata={
                        "granularity": "topic",
                        "keywords": names,
                        "topic_turns": len(rows),
                        "cube_turns": n,
                    },
                )
            )
        keep = {d.key for d in plan.derived}
        for key, old in existing.items():
            if key not in keep and old.state is MemoryState.ACTIVE:
                reason = f"topics re-clustered over {n} turns into {len(keep)}"
                plan.retirements.append(Retirement(old, reason))
        return plan


def kmeans(vectors: np.ndarray, k: int, iterations: int = 25, seed: int = 0) -> np.ndarray:
    """Spherical k-means with k-means++ seeding; labels per row (deterministic)."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    centres = [vectors[int(rng.integers(n))]]
    for _ in range(1, k):
        distance = np.clip(1 - np.max(vectors @ np.stack(centres).T, axis=1), 0, None)
        total = float(distance.sum())
        pick = int(rng.choice(n, p=distance / total)) if total > 0 else int(rng.integers(n))
        centres.append(vectors[pick])
    matrix = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        new = np.argmax(vectors @ matrix.T, axis=1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for c in range(k):
            members = vectors[labels == c]
            if len(members):
                centre = members.sum(axis=0)
                matrix[c] = centre / max(float(np.linalg.norm(centre)), 1e-12)
    return labels


def _keywords(clusters: list[list[str]]) -> list[list[str]]:
    """Each cluster's words by tf-idf against the other clusters."""
    counts = [Counter(w for text in texts for w in query_terms(text, 512)) for texts in clusters]
    df = Counter(w for c in counts for w in c)
    out = []
    for c in counts:
        scored = sorted(
            ((tf * math.log((1 + len(counts)) / df[w]), w) for w, tf in c.items() if len(w) > 2),
            key=lambda x: (-x[0], x[1]),
        )
        out.append([w for _, w in scored[:KEYWORDS]])
    return out
