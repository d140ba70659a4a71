"""Generation and scoring that start from a stored block instead of recomputing it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engram.activation.block import KVBlock
from engram.activation.build import cache_kwarg
from engram.activation.cache import EngramCache, ragged_attention
from engram.errors import ValidationError


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _check_prefix(block: KVBlock, prompt_ids: Sequence[int]) -> None:
    n = block.n_tokens
    if len(prompt_ids) <= n or list(prompt_ids[:n]) != block.token_ids:
        raise ValidationError(
            "the prompt must start with the stored block's tokens and add at least one more"
        )


def reuse_cache(block: KVBlock, model: Any) -> EngramCache:
    """A fresh transformers cache holding `block` (each call: generation mutates it)."""
    cache = EngramCache.of(block, next(model.parameters()).dtype)
    device = _device(model)
    for layer in cache.kv_layers:
        assert layer.keys is not None and layer.values is not None  # filled from the block
        layer.keys, layer.values = layer.keys.to(device), layer.values.to(device)
    return cache


def generate(
    model: Any, block: KVBlock, prompt_ids: Sequence[int], max_new_tokens: int = 32, **kwargs: Any
) -> list[int]:
    """Greedy continuation of `prompt_ids` (= block tokens + new tokens); only the new
    tokens run through the model. Returns the generated token ids."""
    _check_prefix(block, prompt_ids)
    cache = reuse_cache(block, model)
    ids = torch.tensor([list(prompt_ids)], device=_device(model))
    options = {"do_sample": False, "max_new_tokens": max_new_tokens, **kwargs}
    with torch.no_grad(), ragged_attention(model, cache):
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), **{cache_kwarg(model): cache}, **options
        )
    return out[0, ids.shape[1] :].tolist()


def continuation_logits(model: Any, block: KVBlock, new_ids: Sequence[int]) -> torch.Tensor:
    """Logits [len(new_ids), vocab] for `new_ids` read after the stored block."""
    cache = reuse_cache(block, model)
    ids = torch.tensor([list(new_ids)], device=_device(model))
    with torch.no_grad(), ragged_attention(model, cache):
        out = model(ids, use_cache=True, **{cache_kwarg(model): cache})
    return out.logits[0].float()
