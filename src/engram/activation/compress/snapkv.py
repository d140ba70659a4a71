"""SnapKV: keep the entries the block's last `window` tokens attend to most, pooled so
neighbours of an important token survive with it; the window itself is always kept."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.compress.base import Evictor, forced
from engram.activation.compress.registry import register_compressor
from engram.activation.layers import DenseLayer


@register_compressor
@dataclass
class SnapKV(Evictor):
    name = "snapkv"
    window: int = 32
    kernel: int = 7

    def observe(self) -> int:
        return self.window

    def score(
        self, index: int, layer: DenseLayer, block: KVBlock, observation: Observation | None
    ) -> torch.Tensor:
        obs = self.need(observation)
        attn = obs.scores(index, layer.positions)
        pooled = F.avg_pool1d(attn.unsqueeze(1), self.kernel, stride=1, padding=self.kernel // 2)
        return pooled.squeeze(1) + forced(layer, 0, block.n_tokens - obs.window)
