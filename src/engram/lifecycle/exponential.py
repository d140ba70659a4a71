"""Ebbinghaus' exponential forgetting curve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engram.lifecycle.decay import DecayLaw, register_decay_law


@register_decay_law("exponential")
@dataclass(frozen=True)
class ExponentialDecay(DecayLaw):
    """R = 2^(-t / S): a constant share is lost per day; forgets old memories fastest."""

    def retrievability(self, elapsed_days: Any, strength_days: Any) -> Any:
        return np.exp2(-np.maximum(elapsed_days, 0.0) / strength_days)
