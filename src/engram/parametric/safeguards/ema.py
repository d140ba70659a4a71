"""EMA balance (CoIN): the trained parameters follow an exponential moving average that
starts at their value before the batch, so each batch moves them only part of the way.

CoIN derives a per-step balance weight from gradients; this keeps a fixed `beta` (the
stability/plasticity dial) — a simplification, stated in docs/parametric.md."""

from __future__ import annotations

import torch

from engram.errors import ValidationError
from engram.parametric.safeguards.base import BatchRun, Safeguard


class EMABalance(Safeguard):
    name = "ema"

    def __init__(self, beta: float = 0.95):
        if not 0 <= beta < 1:
            raise ValidationError(f"ema beta must be in [0, 1), got {beta}")
        self.beta = beta
        self._params: list[torch.nn.Parameter] = []
        self._shadow: list[torch.Tensor] = []

    def before_batch(self, run: BatchRun) -> None:
        self._params = run.learner.trainable()
        self._shadow = [p.detach().clone() for p in self._params]

    @torch.no_grad()
    def after_step(self, run: BatchRun) -> None:
        for p, s in zip(self._params, self._shadow, strict=True):
            s.mul_(self.beta).add_(p.detach(), alpha=1 - self.beta)

    @torch.no_grad()
    def after_batch(self, run: BatchRun) -> None:
        if run.index == 0:  # nothing to balance against yet: keep what was learned
            return
        for p, s in zip(self._params, self._shadow, strict=True):
            p.copy_(s)
