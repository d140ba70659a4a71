"""LR re-warm and re-decay (continual pre-training recipe): every batch starts a fresh
linear warm-up to the peak rate, then a cosine decay to `min_ratio` of it."""

from __future__ import annotations

import math

from engram.errors import ValidationError
from engram.parametric.safeguards.base import BatchRun, Safeguard


class LRRewarm(Safeguard):
    name = "lr-rewarm"

    def __init__(self, warmup: float = 0.1, min_ratio: float = 0.1):
        if not (0 <= warmup < 1 and 0 <= min_ratio <= 1):
            raise ValidationError("lr-rewarm needs 0 <= warmup < 1 and 0 <= min_ratio <= 1")
        self.warmup, self.min_ratio = warmup, min_ratio

    def lr_factor(self, run: BatchRun) -> float:
        total = max(run.total_steps, 1)
        warm = max(1, round(self.warmup * total)) if self.warmup else 0
        if run.step < warm:
            return (run.step + 1) / warm
        progress = (run.step - warm) / max(total - warm, 1)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.min_ratio + (1 - self.min_ratio) * cosine
