"""Extractive summarising: pick the turns that best cover a set (centroid + MMR) and quote
them in order. No model beyond the embedder; the vectors are the stored ones."""

from __future__ import annotations

import numpy as np

from engram.types import MemoryItem

QUOTE_CHARS = 280  # one quoted turn at most; a summary stays a few hundred characters


def mmr(vectors: np.ndarray, count: int, diversity: float = 0.3) -> list[int]:
    """Rows of `vectors` (unit rows) most similar to their centroid, each new pick
    penalised by its similarity to those already picked (maximal marginal relevance)."""
    n = len(vectors)
    if n == 0:
        return []
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    relevance = vectors @ (centroid / norm) if norm > 0 else np.zeros(n, dtype=np.float32)
    picked: list[int] = []
    redundancy = np.zeros(n, dtype=np.float32)  # max similarity to a picked row
    for _ in range(min(count, n)):
        score = (1 - diversity) * relevance - diversity * redundancy
        score[picked] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return sorted(picked)  # in conversation order


def quote(item: MemoryItem) -> str:
    """'Name: text', cut at QUOTE_CHARS on a word boundary."""
    text = " ".join(item.memory.split())
    if len(text) > QUOTE_CHARS:
        text = text[:QUOTE_CHARS].rsplit(" ", 1)[0] + " …"
    name = item.provenance.name or item.provenance.role
    return f"{name}: {text}" if name else text


def day(item: MemoryItem) -> str | None:
    """'8 May 2023' for the time a memory happened, if known."""
    when = item.provenance.timestamp
    return f"{when.day} {when:%B %Y}" if when else None
