"""Synthetic memories for `engram bench scale`: clustered unit vectors (precomputed, no
embedding model anywhere in the load or the queries) and short texts whose words follow
their cluster, so full text and vectors agree the way real conversation memories do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from engram.store.base import NewMemory

SESSION_TURNS = 20  # memories per session
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
_START = datetime(2023, 1, 1, tzinfo=UTC)


def _words(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct pronounceable pseudo-words (three syllables each)."""
    out: dict[str, None] = {}
    while len(out) < n:
        out["".join(rng.choice(_SYLLABLES, 3))] = None
    return list(out)


@dataclass(frozen=True)
class Corpus:
    """Cluster centres and the words of each cluster; memories are drawn around them."""

    centres: np.ndarray  # (clusters, dim) unit float32
    topic_words: list[list[str]]  # per cluster
    common_words: list[str]
    noise: float

    @classmethod
    def make(cls, dim: int, clusters: int = 256, seed: int = 0, noise: float = 0.6) -> Corpus:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        vocab = _words(rng, clusters * 12 + 400)
        topics = [vocab[i * 12 : (i + 1) * 12] for i in range(clusters)]
        return cls(centres, topics, vocab[clusters * 12 :], noise)

    def vectors(self, rng: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
        dim = self.centres.shape[1]
        out = self.centres[clusters] + rng.standard_normal((len(clusters), dim)).astype(
            np.float32
        ) * (self.noise / np.sqrt(dim))
        # float32 as an embedder's (a float64 scalar above promoted them)
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def text(self, rng: np.random.Generator, cluster: int, n_words: int = 12) -> str:
        topic = self.topic_words[cluster]
        picks = [
            topic[int(rng.integers(len(topic)))]
            if rng.random() < 0.4
            else self.common_words[int(rng.integers(len(self.common_words)))]
            for _ in range(n_words)
        ]
        return " ".join(picks)


@dataclass(frozen=True)
class Batch:
    rows: list[NewMemory]
    vectors: np.ndarray


def owner_batches(corpus: Corpus, owner: int, size: int, batch: int, seed: int) -> Iterator[Batch]:
    """An owner's `size` memories in batches: a handful of the corpus's clusters per
    owner, sessions of SESSION_TURNS turns by two speakers, one hour apart."""
    rng = np.random.default_rng([seed, owner])
    own = rng.choice(len(corpus.centres), size=min(16, len(corpus.centres)), replace=False)
    for start in range(0, size, batch):
        n = min(batch, size - start)
        clusters = own[rng.integers(len(own), size=n)]
        rows = []
        for i, cluster in enumerate(clusters.tolist()):
            turn = start + i
            text = corpus.text(rng, cluster)
            rows.append(
                NewMemory(
                    text=text,
                    index_text=text,
                    type="conversation",
                    metadata={},
                    user_id=f"o{owner}",
                    agent_id=None,
                    session_id=f"s{turn // SESSION_TURNS}",
                    source_id=None,
                    turn_index=turn % SESSION_TURNS,
                    role="user",
                    name=("Ana", "Ben")[turn % 2],
                    occurred_at=_START + timedelta(hours=turn),
                    source="bench-scale",
                )
            )
        yield Batch(rows, corpus.vectors(rng, clusters))


@dataclass(frozen=True)
class Query:
    text: str
    vector: np.ndarray


def queries(corpus: Corpus, owner: int, n: int, seed: int) -> list[Query]:
    """Queries about an owner's own clusters: three of a cluster's words and a vector
    near its centre (what an embedded question about that topic looks like)."""
    rng = np.random.default_rng([seed, owner])
    own = rng.choice(len(corpus.centres), size=min(16, len(corpus.centres)), replace=False)
    qrng = np.random.default_rng([seed, owner, 1])
    clusters = own[qrng.integers(len(own), size=n)]
    vectors = corpus.vectors(qrng, clusters)
    return [
        Query(
            " ".join(qrng.choice(corpus.topic_words[c], 3, replace=False).tolist()) + "?",
            vectors[i],
        )
        for i, c in enumerate(clusters.tolist())
    ]
