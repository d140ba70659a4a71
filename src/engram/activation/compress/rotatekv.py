"""RotateKV-style: an orthonormal Hadamard rotation of each key head before KIVI quantizing
spreads outlier channels over all channels; attention-sink tokens stay in float16.

Keys here are stored after RoPE, so the rotation is applied post-RoPE (RotateKV rotates
pre-RoPE inside the model); decoding multiplies by the transpose, exactly undoing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from engram.activation.compress.kivi import KIVI
from engram.activation.compress.registry import register_compressor
from engram.activation.quant import hadamard


@register_compressor
@dataclass
class RotateKV(KIVI):
    name = "rotatekv"
    rotated: ClassVar[bool] = True
    sinks: int = 4

    def rotate(self, keys: torch.Tensor) -> torch.Tensor:
        return keys @ hadamard(keys.shape[-1])
