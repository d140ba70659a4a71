"""Per-owner rerankers over the feedback features, and their registry (`search.reranker`).

A reranker decides how an owner's feedback weights (one per feature of
`engram.text.retrieval.feedback`) move after each report; search applies them the same way
whichever reranker trained them (the pipeline's `feedback` part: features @ weights). It
learns on top of the configured pipeline's score without its feedback part
(`Retriever.feedback_base`); a pipeline without a feedback part only records reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engram.errors import ConfigError
from engram.text.retrieval.feedback import FEATURES, weight_vector


class Reranker(ABC):
    """One way to learn the feedback weights. Subclasses are small frozen dataclasses."""

    name: str = "reranker"

    @abstractmethod
    def update(
        self,
        weights: dict[str, float] | None,
        base: np.ndarray,
        features: np.ndarray,
        positive: np.ndarray,
        wrong: np.ndarray,
    ) -> dict[str, float]:
        """New weights after one report. `weights` are the owner's current ones (None: the
        defaults); `base` is the pipeline's score without feedback and `features` the
        feedback features (already scaled by the feedback part's weight), per snapshot row;
        `positive` and `wrong` are row indexes of cited/used and wrong memories."""


def _as_dict(w: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURES, w.tolist(), strict=True))


@dataclass(frozen=True)
class OnlineReranker(Reranker):
    """A pairwise logistic (RankNet) step per report: every cited memory should outscore the
    uncited memories ranked near the top and those marked wrong.

    Weights start from round defaults chosen on LoCoMo-format data and stay non-negative;
    the step is small (0.01), so a few noisy reports cannot undo what many agreed on.
    Features are computed from the log *before* the report, as they will be at search time.
    """

    learning_rate: float = 0.01
    negatives: int = 20  # uncited memories from the top of the ranking used as negatives
    name: str = "online"

    def update(
        self,
        weights: dict[str, float] | None,
        base: np.ndarray,
        features: np.ndarray,
        positive: np.ndarray,
        wrong: np.ndarray,
    ) -> dict[str, float]:
        w = weight_vector(weights)
        if len(positive) == 0:
            return _as_dict(w)
        total = base + features @ w
        excluded = np.zeros(len(total), dtype=bool)
        excluded[positive] = True
        ranked = np.argsort(-np.where(excluded, -np.inf, total))[: self.negatives]
        negative = np.unique(np.concatenate([ranked, wrong]).astype(np.int64))
        negative = negative[~excluded[negative]]
        if len(negative) == 0:
            return _as_dict(w)
        margin = total[positive][:, None] - total[negative][None, :]
        pull = 1.0 / (1.0 + np.exp(np.clip(margin, -50.0, 50.0)))  # d(-log sigmoid)/d margin
        diff = features[positive][:, None, :] - features[negative][None, :, :]
        grad = (pull[:, :, None] * diff).mean(axis=(0, 1))
        w = np.maximum(w + self.learning_rate * grad, 0.0)
        return _as_dict(w)


@dataclass(frozen=True)
class FixedReranker(Reranker):
    """Keeps the owner's weights (the round defaults) as they are: reports still grow the
    feedback log the features are computed from, but never move the weights. Learning the
    weights online did not beat the defaults on LoCoMo (docs/retrieval.md)."""

    name: str = "fixed"

    def update(
        self,
        weights: dict[str, float] | None,
        base: np.ndarray,
        features: np.ndarray,
        positive: np.ndarray,
        wrong: np.ndarray,
    ) -> dict[str, float]:
        return _as_dict(weight_vector(weights))


RERANKERS: dict[str, Callable[[], Reranker]] = {}


def register_reranker(name: str, factory: Callable[[], Reranker]) -> None:
    """Make a reranker selectable by name (config `search.reranker`)."""
    RERANKERS[name] = factory


def build_reranker(name: str) -> Reranker:
    factory = RERANKERS.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigError(
            f"unknown search.reranker {name!r}; known: {', '.join(sorted(RERANKERS))}"
        )
    return factory()


register_reranker("online", OnlineReranker)
register_reranker("fixed", FixedReranker)

__all__ = [
    "RERANKERS",
    "FixedReranker",
    "OnlineReranker",
    "Reranker",
    "build_reranker",
    "register_reranker",
]
