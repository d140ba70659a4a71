"""Asymmetric low-bit quantization of KV tensors, packed into bytes (KIVI's layout).

Keys are quantized per channel (statistics over groups of `group` tokens), values per
token (statistics over groups of `group` channels), as KIVI found keys have outlier
channels and values do not. Integers are packed 8 // bits per byte; scale and minimum
are float16, so the stored bytes are what is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Axis = Literal["channel", "token"]
BITS = (2, 4, 8)


@dataclass(frozen=True)
class QTensor:
    """A quantized [heads, tokens, dim] tensor: packed codes, per-group scale and minimum."""

    packed: torch.Tensor  # uint8, flat
    scale: torch.Tensor  # float16, one per group
    minimum: torch.Tensor  # float16, one per group
    shape: tuple[int, int, int]
    bits: int
    group: int
    axis: Axis

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scale, self.minimum))


def _grouped(x: torch.Tensor, group: int, axis: Axis) -> torch.Tensor:
    """[H, T, D] -> [..., group] with the grouped axis last."""
    h, t, d = x.shape
    if axis == "channel":  # groups of `group` tokens, per channel
        return x.reshape(h, t // group, group, d).transpose(2, 3)
    return x.reshape(h, t, d // group, group)  # groups of `group` channels, per token


def _ungrouped(g: torch.Tensor, shape: tuple[int, int, int], axis: Axis) -> torch.Tensor:
    if axis == "channel":
        return g.transpose(2, 3).reshape(shape)
    return g.reshape(shape)


def fits(length: int, group: int) -> int:
    """Largest multiple of `group` not above `length`."""
    return (length // group) * group


def quantize(x: torch.Tensor, bits: int, group: int, axis: Axis) -> QTensor:
    """Quantize [H, T, D]; T must be a multiple of `group` for per-channel keys, D for values."""
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")
    shape = (x.shape[0], x.shape[1], x.shape[2])
    g = _grouped(x.float(), group, axis)
    lo = g.amin(dim=-1, keepdim=True)
    hi = g.amax(dim=-1, keepdim=True)
    levels = (1 << bits) - 1
    scale = ((hi - lo) / levels).to(torch.float16)
    minimum = lo.to(torch.float16)
    safe = torch.where(scale.float() > 0, scale.float(), torch.ones_like(lo))
    codes = ((g - minimum.float()) / safe).round_().clamp_(0, levels).to(torch.uint8)
    return QTensor(
        packed=pack(codes.reshape(-1), bits),
        scale=scale.reshape(-1),
        minimum=minimum.reshape(-1),
        shape=shape,
        bits=bits,
        group=group,
        axis=axis,
    )


def dequantize(q: QTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    count = math.prod(q.shape)
    codes = unpack(q.packed, q.bits, count).float()
    h, t, d = q.shape
    if q.axis == "channel":
        stats = (h, t // q.group, d, 1)
    else:
        stats = (h, t, d // q.group, 1)
    g = codes.reshape(*stats[:3], q.group)
    x = g * q.scale.float().reshape(stats) + q.minimum.float().reshape(stats)
    return _ungrouped(x, q.shape, q.axis).to(dtype)


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes < 2**bits -> bytes holding 8 // bits codes each."""
    per = 8 // bits
    pad = (-codes.numel()) % per
    if pad:
        codes = torch.cat([codes, codes.new_zeros(pad)])
    lanes = codes.reshape(-1, per).to(torch.int32)
    out = torch.zeros(lanes.shape[0], dtype=torch.int32)
    for i in range(per):
        out |= lanes[:, i] << (i * bits)
    return out.to(torch.uint8)


def unpack(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    per = 8 // bits
    mask = (1 << bits) - 1
    wide = packed.to(torch.int32).unsqueeze(1)
    shifts = torch.arange(per, dtype=torch.int32) * bits
    return ((wide >> shifts) & mask).reshape(-1)[:count].to(torch.uint8)


def hadamard(dim: int) -> torch.Tensor:
    """Orthonormal Hadamard matrix of size `dim`: Sylvester blocks of the largest power of
    two dividing `dim`, block-diagonal when `dim` is not itself a power of two."""
    block = dim & -dim
    h = torch.ones(1, 1)
    while h.shape[0] < block:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    h = h / math.sqrt(block)
    return torch.block_diag(*([h] * (dim // block)))
