"""The per-owner online reranker: one weight per feedback feature, updated after each
feedback report by a pairwise logistic (RankNet) step — every cited memory should outscore
the uncited memories ranked near the top and those marked wrong.

Weights start from round defaults that were chosen on LoCoMo-format data and stay
non-negative; the step is small (0.01), so a few noisy reports cannot undo what many agreed
on. Features are computed from the log *before* the report, as they will be at search time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engram.text.retrieval.feedback import FEATURES, weight_vector


@dataclass(frozen=True)
class OnlineReranker:
    learning_rate: float = 0.01
    negatives: int = 20  # uncited memories from the top of the ranking used as negatives

    def update(
        self,
        weights: dict[str, float] | None,
        base: np.ndarray,
        features: np.ndarray,
        positive: np.ndarray,
        wrong: np.ndarray,
    ) -> dict[str, float]:
        """New weights after one report. `base` is the hybrid score without feedback and
        `features` the feedback features, per snapshot row; `positive` and `wrong` are row
        indexes of cited/used and wrong memories."""
        w = weight_vector(weights)
        if len(positive) == 0:
            return dict(zip(FEATURES, w.tolist(), strict=True))
        total = base + features @ w
        excluded = np.zeros(len(total), dtype=bool)
        excluded[positive] = True
        ranked = np.argsort(-np.where(excluded, -np.inf, total))[: self.negatives]
        negative = np.unique(np.concatenate([ranked, wrong]).astype(np.int64))
        negative = negative[~excluded[negative]]
        if len(negative) == 0:
            return dict(zip(FEATURES, w.tolist(), strict=True))
        margin = total[positive][:, None] - total[negative][None, :]
        pull = 1.0 / (1.0 + np.exp(np.clip(margin, -50.0, 50.0)))  # d(-log sigmoid)/d margin
        diff = features[positive][:, None, :] - features[negative][None, :, :]
        grad = (pull[:, :, None] * diff).mean(axis=(0, 1))
        w = np.maximum(w + self.learning_rate * grad, 0.0)
        return dict(zip(FEATURES, w.tolist(), strict=True))
