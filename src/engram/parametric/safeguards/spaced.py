"""Spaced replay from the forgetting curve ("Do Your Best and Get Enough Rest"): each
taught fact has a strength S (in batches); its retention after t batches is exp(-t / S).
A fact is replayed when retention falls below `retention`, and each replay multiplies its
strength by `growth`, so well-rehearsed facts rest longer between replays."""

from __future__ import annotations

import math

from engram.errors import ValidationError
from engram.parametric.examples import examples_for
from engram.parametric.safeguards.base import BatchRun, Safeguard


class SpacedReplay(Safeguard):
    name = "spaced"

    def __init__(self, strength: float = 1.0, growth: float = 2.0, retention: float = 0.5):
        if strength <= 0 or growth < 1 or not 0 < retention < 1:
            raise ValidationError("spaced needs strength > 0, growth >= 1, 0 < retention < 1")
        self.strength, self.growth, self.retention = strength, growth, retention
        self._state: dict[str, tuple[float, int]] = {}  # memory id -> (strength, last seen)

    def interval(self, strength: float) -> float:
        """Batches until retention exp(-t / S) drops to the threshold."""
        return strength * math.log(1 / self.retention)

    def due(self, now: int) -> list[str]:
        return [mid for mid, (s, last) in self._state.items() if now - last >= self.interval(s)]

    def before_batch(self, run: BatchRun) -> None:
        due = set(self.due(run.index))
        facts = [f for batch in run.seen for f in batch if f.memory_id in due]
        run.replay.extend(examples_for(facts))
        for mid in due:
            s, _ = self._state[mid]
            self._state[mid] = (s * self.growth, run.index)
        for f in run.facts:
            self._state[f.memory_id] = (self.strength, run.index)
