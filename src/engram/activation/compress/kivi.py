"""KIVI: keys quantized per channel, values per token, to 2/4/8 bits in groups, with the
most recent `residual` entries (and optionally the first `sinks`) kept in float16."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.compress.base import Compressor
from engram.activation.compress.registry import register_compressor
from engram.activation.layers import DenseLayer, QuantizedLayer, StoredLayer
from engram.activation.quant import BITS, fits, quantize
from engram.errors import ValidationError


@register_compressor
@dataclass
class KIVI(Compressor):
    name = "kivi"
    rotated: ClassVar[bool] = False
    bits: int = 4
    group: int = 32
    residual: int = 32
    sinks: int = 0

    def __post_init__(self) -> None:
        if self.bits not in BITS:
            raise ValidationError(f"{self.name}: bits must be one of {BITS}, got {self.bits}")
        if self.group < 1 or self.residual < 0 or self.sinks < 0:
            raise ValidationError(f"{self.name}: group >= 1, residual >= 0 and sinks >= 0")

    def rotate(self, keys: torch.Tensor) -> torch.Tensor:
        """Hook: transform keys before quantizing (identity here; RotateKV rotates)."""
        return keys

    def apply(self, block: KVBlock, observation: Observation | None) -> KVBlock:
        layers: list[StoredLayer] = [
            self.quantize_layer(self.dense(layer, self.name)) for layer in block.layers
        ]
        return replace(block, layers=layers)

    def quantize_layer(self, layer: DenseLayer) -> QuantizedLayer:
        tokens, head_dim = layer.tokens, layer.head_dim
        sinks = min(self.sinks, tokens)
        middle = fits(max(0, tokens - sinks - self.residual), self.group)
        value_group = self.group if head_dim % self.group == 0 else head_dim

        def part(start: int, stop: int) -> DenseLayer:
            return DenseLayer(
                layer.keys[:, start:stop].to(torch.float16).contiguous(),
                layer.values[:, start:stop].to(torch.float16).contiguous(),
                layer.positions[:, start:stop].contiguous(),
            )

        mid = slice(sinks, sinks + middle)
        keys = self.rotate(layer.keys[:, mid].float())
        return QuantizedLayer(
            sinks=part(0, sinks),
            qkeys=quantize(keys, self.bits, self.group, "channel"),
            qvalues=quantize(layer.values[:, mid].float(), self.bits, value_group, "token"),
            residual=part(sinks + middle, tokens),
            rotated=self.rotated,
            positions=layer.positions.contiguous(),
        )
