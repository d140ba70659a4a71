"""Float16 storage: the uncompressed reference every other method is measured against."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.compress.base import Compressor
from engram.activation.compress.registry import register_compressor
from engram.activation.layers import DenseLayer, StoredLayer


@register_compressor
@dataclass
class Float16(Compressor):
    name = "fp16"

    def apply(self, block: KVBlock, observation: Observation | None) -> KVBlock:
        layers: list[StoredLayer] = []
        for stored in block.layers:
            layer = self.dense(stored, self.name)
            layers.append(
                DenseLayer(
                    layer.keys.to(torch.float16), layer.values.to(torch.float16), layer.positions
                )
            )
        return replace(block, layers=layers)
