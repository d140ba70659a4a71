"""Hyperbolic forgetting (Mazur; Wickelgren's single-trace form with exponent 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engram.lifecycle.decay import DecayLaw, register_decay_law


@register_decay_law("hyperbolic")
@dataclass(frozen=True)
class HyperbolicDecay(DecayLaw):
    """R = 1 / (1 + t / S): a tail between the exponential and the power law's."""

    def retrievability(self, elapsed_days: Any, strength_days: Any) -> Any:
        return 1.0 / (1.0 + np.maximum(elapsed_days, 0.0) / strength_days)
