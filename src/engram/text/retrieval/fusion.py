"""Fusion wraps several retrievers and combines their ranked lists into one."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field

from engram.store.base import Scored
from engram.text.retrieval.base import QueryContext, Retriever


@dataclass
class Fusion(Retriever):
    """Base: ask each retriever for `ctx.candidates`, then combine with `fuse`."""

    retrievers: list[Retriever] = field(default_factory=list)
    weights: list[float] | None = None

    def __post_init__(self) -> None:
        if not self.retrievers:
            raise ValueError(f"{type(self).__name__} needs at least one retriever")
        if self.weights is not None and len(self.weights) != len(self.retrievers):
            raise ValueError("one weight per retriever")

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        n = max(k, ctx.candidates)
        lists = [r.retrieve(ctx, n) for r in self.retrievers]
        weights = self.weights or [1.0] * len(lists)
        totals: dict[int, float] = {}
        for weight, ranked in zip(weights, lists, strict=True):
            for key, value in self.fuse(ranked).items():
                totals[key] = totals.get(key, 0.0) + weight * value
        for weight, ranked in zip(weights, lists, strict=True):
            missing = self.missing(ranked)
            for key in totals.keys() - {s.key for s in ranked}:
                totals[key] += weight * missing
        best = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [Scored(key, score) for key, score in best]

    @abstractmethod
    def fuse(self, ranked: list[Scored]) -> dict[int, float]:
        """Per-list contribution of each key it contains."""

    def missing(self, ranked: list[Scored]) -> float:
        """Contribution of a key the list does not contain."""
        return 0.0


@dataclass
class RRFFusion(Fusion):
    """Reciprocal rank fusion (Cormack et al. 2009): sum of 1 / (c + rank)."""

    name: str = "rrf"
    c: float = 60.0

    def fuse(self, ranked: list[Scored]) -> dict[int, float]:
        return {s.key: 1.0 / (self.c + rank) for rank, s in enumerate(ranked, start=1)}


@dataclass
class ZScoreFusion(Fusion):
    """Standardise each list's scores (mean 0, sd 1) and add them; absent keys get the floor."""

    name: str = "zscore"

    def fuse(self, ranked: list[Scored]) -> dict[int, float]:
        if not ranked:
            return {}
        scores = [s.score for s in ranked]
        mean = sum(scores) / len(scores)
        sd = (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5 or 1.0
        return {s.key: (s.score - mean) / sd for s in ranked}

    def missing(self, ranked: list[Scored]) -> float:
        if not ranked:
            return 0.0
        return min(self.fuse(ranked).values())
