"""Key-norm eviction: keys with a small L2 norm draw the most attention (kvpress KnormPress)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.compress.base import Evictor
from engram.activation.compress.registry import register_compressor
from engram.activation.layers import DenseLayer


@register_compressor
@dataclass
class KeyNorm(Evictor):
    name = "knorm"

    def score(
        self, index: int, layer: DenseLayer, block: KVBlock, observation: Observation | None
    ) -> torch.Tensor:
        return -layer.keys.float().norm(dim=-1)
