"""KVBlock: the keys and values of one memory block for one model, as stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from engram.activation.layers import StoredLayer

FP16_BYTES = 2


@dataclass
class KVBlock:
    """Every layer's cache of `token_ids` (batch of one), plus what it was built with."""

    layers: list[StoredLayer]
    token_ids: list[int]
    model_fingerprint: str
    tokenizer_hash: str | None
    dtype: str
    method: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        """Bytes of keys and values as stored (quantized codes + scales + fp16 parts)."""
        return sum(layer.nbytes for layer in self.layers)

    @property
    def fp16_nbytes(self) -> int:
        """Bytes of the uncompressed cache of every token in float16, the reference size."""
        total = 0
        for layer in self.layers:
            heads = int(layer.positions.shape[0])
            total += 2 * heads * self.n_tokens * layer.head_dim * FP16_BYTES
        return total

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def method_name(self) -> str:
        """The compression chain as one string: '' for none, else e.g. 'snapkv+kivi'."""
        return "+".join(step["name"] for step in self.method)

    def kv(self, dtype: torch.dtype | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, dense keys and values shaped [1, kv_heads, kept, head_dim]."""
        dtype = dtype or self.torch_dtype
        out = []
        for layer in self.layers:
            keys, values = layer.dense(dtype)
            out.append((keys.unsqueeze(0), values.unsqueeze(0)))
        return out
