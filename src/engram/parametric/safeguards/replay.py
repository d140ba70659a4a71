"""Replay of earlier memories: each new batch is mixed with examples of facts already
taught (the replay half of the continual pre-training recipe)."""

from __future__ import annotations

from engram.errors import ValidationError
from engram.parametric.examples import examples_for
from engram.parametric.safeguards.base import BatchRun, Safeguard


class MemoryReplay(Safeguard):
    """Each epoch mixes in `ratio` × (new examples) examples drawn afresh, uniformly, from
    earlier batches (so over the epochs every earlier fact comes back)."""

    name = "replay"

    def __init__(self, ratio: float = 1.0):
        if ratio <= 0:
            raise ValidationError(f"replay ratio must be > 0, got {ratio}")
        self.ratio = ratio

    def before_batch(self, run: BatchRun) -> None:
        pool = examples_for([f for batch in run.seen for f in batch])
        run.replay_pool.extend(pool)
        run.replay_per_epoch += min(len(pool), round(self.ratio * len(run.examples)))
