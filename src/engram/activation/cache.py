"""A transformers cache pre-filled from a stored block, correct after eviction.

An evicted cache holds fewer entries than the prompt had tokens. transformers derives two
things from `get_seq_length()`: the RoPE positions of new tokens (must be the *logical*
length, the prompt's token count) and the attention mask's size (must be the *physical*
number of cached entries). `EngramCache` answers each question separately. When layers
hold different numbers of entries (PrefixKV's per-layer budgets) the mask is built for the
longest layer and `ragged_attention` trims it per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from transformers import AttentionInterface, AttentionMaskInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from engram.activation.block import KVBlock


class EngramCache(DynamicCache):
    """DynamicCache whose logical length (positions) may exceed its physical one (mask)."""

    def __init__(self, kv: list[tuple[torch.Tensor, torch.Tensor]], prompt_tokens: int):
        super().__init__()
        self.layers = []
        for keys, values in kv:
            layer = DynamicLayer()
            layer.update(keys, values)
            self.layers.append(layer)
        self.stored = [int(k.shape[-2]) for k, _ in kv]
        self.prompt_tokens = prompt_tokens

    @classmethod
    def of(cls, block: KVBlock, dtype: torch.dtype | None = None) -> EngramCache:
        return cls(block.kv(dtype), block.n_tokens)

    @property
    def kv_layers(self) -> list[DynamicLayer]:
        """`layers`, typed as what this cache holds: DynamicLayers, each filled."""
        return cast("list[DynamicLayer]", self.layers)

    @property
    def ragged(self) -> bool:
        return len(set(self.stored)) > 1

    def _appended(self) -> int:
        return self.kv_layers[0].get_seq_length() - self.stored[0]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Logical length: prompt tokens covered plus tokens appended since (RoPE positions)."""
        return self.prompt_tokens + self._appended()

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return max(layer.get_seq_length() for layer in self.kv_layers)

    def get_mask_sizes(self, query_length: int, layer_idx: int) -> tuple[int, int]:
        return self.get_query_offset() + query_length, 0


def _trimmed(base: Callable[..., Any]) -> Callable[..., Any]:
    def attention(
        module: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs: Any,
    ) -> Any:
        if attention_mask is not None and attention_mask.shape[-1] != key.shape[-2]:
            # Cached entries are all in the past (visible); keep this layer's count of them
            # and the new tokens' causal columns at the end.
            new = query.shape[-2]
            past = key.shape[-2] - new
            attention_mask = torch.cat(
                [attention_mask[..., :past], attention_mask[..., -new:]], dim=-1
            )
        return base(module, query, key, value, attention_mask, **kwargs)

    return attention


def _ragged_name(base: str) -> str:
    name = f"engram_ragged_{base}"
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _trimmed(ALL_ATTENTION_FUNCTIONS[base]))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


@contextmanager
def attention_implementation(model: Any, name: str) -> Iterator[None]:
    """Run `model` with another registered attention implementation, then restore it."""
    old = model.config._attn_implementation
    model.config._attn_implementation = name
    try:
        yield
    finally:
        model.config._attn_implementation = old


@contextmanager
def ragged_attention(model: Any, cache: EngramCache) -> Iterator[None]:
    """Let layers of different lengths share one mask (a no-op for an even cache)."""
    if not cache.ragged:
        yield
        return
    base = model.config._attn_implementation
    if base not in ALL_ATTENTION_FUNCTIONS or base not in ALL_MASK_ATTENTION_FUNCTIONS:
        base = "sdpa"  # eager lives in each model file, not in the registry
    with attention_implementation(model, _ragged_name(base)):
        yield
