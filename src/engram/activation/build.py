"""Prefill a memory block once and keep its keys and values (optionally compressed)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from engram.activation.block import KVBlock
from engram.activation.cache import attention_implementation
from engram.activation.fingerprint import model_fingerprint, tokenizer_hash
from engram.activation.layers import DenseLayer
from engram.errors import ValidationError

if TYPE_CHECKING:
    from engram.activation.compress.base import Compressor


@dataclass
class Observation:
    """Attention of the block's last `window` tokens over all of its tokens, per layer
    ([query_heads, window, tokens]): what SnapKV-style scores are computed from."""

    attentions: list[torch.Tensor]
    window: int

    def scores(self, layer: int, positions: torch.Tensor) -> torch.Tensor:
        """Attention mass each kept entry received, summed over the window, averaged over the
        query heads that share a KV head: [kv_heads, kept]."""
        attn = self.attentions[layer].sum(dim=1)  # [q_heads, tokens]
        kv_heads = positions.shape[0]
        per_kv = attn.reshape(kv_heads, -1, attn.shape[-1]).mean(dim=1)
        return per_kv.gather(1, positions.long())


def cache_kwarg(model: Any) -> str:
    """transformers 5 calls it `cache`; 4.x `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def layer_kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def prefill(
    model: Any, ids: torch.Tensor, observe: int = 0
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Observation | None]:
    """One forward over `ids` ([1, T]). With `observe`, the last `observe` tokens run as a
    second chunk with eager attention so their attention rows can be read."""
    kwarg = cache_kwarg(model)
    with torch.no_grad():
        if observe <= 0:
            return layer_kv(output_cache(model(ids, use_cache=True))), None
        window = min(observe, ids.shape[1] - 1)
        head = output_cache(model(ids[:, :-window], use_cache=True))
        with attention_implementation(model, "eager"):
            out = model(ids[:, -window:], use_cache=True, output_attentions=True, **{kwarg: head})
    attentions = [a[0].float() for a in out.attentions]
    return layer_kv(output_cache(out)), Observation(attentions, window)


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def build_kv(
    model: Any,
    source: str | list[int],
    tokenizer: Any | None = None,
    compressor: Compressor | None = None,
    meta: dict[str, Any] | None = None,
    fingerprint: str | None = None,
) -> KVBlock:
    """The KV cache of `source` (text, tokenized with `tokenizer`, or token ids) for `model`,
    compressed by `compressor` when given. Batch of one; the model runs in eval mode."""
    if isinstance(source, str):
        if tokenizer is None:
            raise ValidationError("building from text needs the model's tokenizer")
        token_ids = encode(tokenizer, source)
    else:
        token_ids = [int(t) for t in source]
    if len(token_ids) < 2:
        raise ValidationError("a memory block needs at least 2 tokens")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and len(token_ids) > limit:
        raise ValidationError(f"{len(token_ids)} tokens exceed the model's {limit} positions")
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([token_ids], device=device)
    observe = compressor.observation_window() if compressor is not None else 0
    kv, observation = prefill(model, ids, observe)
    positions = torch.arange(len(token_ids), dtype=torch.int32)
    layers = [
        DenseLayer(k[0].cpu(), v[0].cpu(), positions.expand(k.shape[1], -1).contiguous())
        for k, v in kv
    ]
    block = KVBlock(
        layers=list(layers),
        token_ids=token_ids,
        model_fingerprint=fingerprint or model_fingerprint(model),
        tokenizer_hash=tokenizer_hash(tokenizer),
        dtype=str(kv[0][0].dtype).removeprefix("torch."),
        meta=dict(meta or {}),
    )
    if compressor is not None:
        block = compressor.compress(block, observation)
    return block
