"""PrefixKV: layer-adaptive budgets. Each layer keeps the smallest prefix of its entries
(ranked by observation attention) that holds a share `threshold` of its attention mass;
one global threshold is found by binary search so the total kept hits the budget."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.compress.base import Evictor, forced, top_sorted
from engram.activation.compress.registry import register_compressor
from engram.activation.layers import DenseLayer, StoredLayer

_STEPS = 40


@register_compressor
@dataclass
class PrefixKV(Evictor):
    name = "prefixkv"
    window: int = 32

    def observe(self) -> int:
        return self.window

    def score(
        self, index: int, layer: DenseLayer, block: KVBlock, observation: Observation | None
    ) -> torch.Tensor:
        obs = self.need(observation)
        attn = obs.scores(index, layer.positions)
        return attn + forced(layer, 0, block.n_tokens - obs.window)

    def apply(self, block: KVBlock, observation: Observation | None) -> KVBlock:
        obs = self.need(observation)
        dense = [self.dense(layer, self.name) for layer in block.layers]
        mass = [obs.scores(i, layer.positions) for i, layer in enumerate(dense)]
        scores = [self.score(i, layer, block, obs) for i, layer in enumerate(dense)]
        floor = min(obs.window, block.n_tokens)
        counts = layer_budgets(mass, round(self.keep * block.n_tokens) * len(dense), floor)
        layers: list[StoredLayer] = [
            layer.take(top_sorted(s, n)) for layer, s, n in zip(dense, scores, counts, strict=True)
        ]
        return replace(block, layers=layers)


def layer_budgets(attention: list[torch.Tensor], total: int, floor: int) -> list[int]:
    """Entries per layer for the largest attention-mass threshold whose total fits `total`
    (each layer keeps at least `floor`, the observation window)."""
    cumulative = []
    for attn in attention:
        ranked = attn.mean(dim=0).sort(descending=True).values
        cumulative.append(ranked.cumsum(0) / ranked.sum().clamp(min=1e-12))

    def counts(threshold: float) -> list[int]:
        out = []
        for c in cumulative:
            need = int(torch.searchsorted(c, torch.tensor(threshold)).item()) + 1
            out.append(max(min(floor, c.shape[0]), min(need, c.shape[0])))
        return out

    lo, hi = 0.0, 1.0
    for _ in range(_STEPS):
        mid = (lo + hi) / 2
        if sum(counts(mid)) <= total:
            lo = mid
        else:
            hi = mid
    return counts(lo)
