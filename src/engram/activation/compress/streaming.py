"""StreamingLLM: keep the first `sinks` tokens (attention sinks) and the most recent ones."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.compress.base import Evictor, forced
from engram.activation.compress.registry import register_compressor
from engram.activation.layers import DenseLayer


@register_compressor
@dataclass
class StreamingLLM(Evictor):
    name = "streamingllm"
    sinks: int = 4

    def score(
        self, index: int, layer: DenseLayer, block: KVBlock, observation: Observation | None
    ) -> torch.Tensor:
        # Later positions score higher; sinks beat everything.
        return layer.positions.float() + forced(layer, self.sinks, block.n_tokens + 1)
