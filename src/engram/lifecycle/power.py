"""Power-law forgetting (Wixted & Ebbesen; the curve FSRS fits to review logs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engram.lifecycle.decay import DecayLaw, register_decay_law


@register_decay_law("power")
@dataclass(frozen=True)
class PowerDecay(DecayLaw):
    """R = (1 + f t / S)^(-exponent) with f = 2^(1/exponent) - 1, so R(S) = 0.5. Drops
    faster than exponential at first and much slower later: old memories keep a long tail.
    FSRS-4.5 uses exponent 0.5."""

    exponent: float = 0.5

    def __post_init__(self) -> None:
        if not self.exponent > 0:
            raise ValueError("exponent must be positive")

    def retrievability(self, elapsed_days: Any, strength_days: Any) -> Any:
        factor = 2.0 ** (1.0 / self.exponent) - 1.0
        t = np.maximum(elapsed_days, 0.0)
        return (1.0 + factor * t / strength_days) ** (-self.exponent)
