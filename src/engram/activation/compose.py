"""KV blocks that compose: each memory's prompt line is cached on its own, and a prompt over
any set of memories, in any order, is assembled from those blocks instead of prefilled.

A memory's *segment* block is computed once, right after the prompt's *head* (the
instructions, identical for every prompt), so each segment sees the head's attention sinks
as it will in the assembled prompt. Assembling places the segments one after another, with
their keys rotated to the new offsets (`rope.shift_keys`). What the segments miss is
attention to each other: each was computed without the memories that now precede it.
CacheBlend's selective recompute restores most of it: the tokens whose layer-1 keys and
values deviate most from a full prefill's (a 2-layer forward over the whole prompt finds
them) are recomputed through every layer, attending to the reused entries of everything
before them; the rest are reused as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from engram.activation.block import KVBlock
from engram.activation.build import cache_kwarg, layer_kv, output_cache
from engram.activation.compress.base import Compressor, Evictor
from engram.activation.layers import DenseLayer
from engram.activation.reuse import reuse_cache
from engram.activation.rope import rotary_frequencies, shift_keys
from engram.errors import ValidationError

SELECT_LAYERS = 2  # a forward through this many layers scores each token's deviation


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def build_segment(
    model: Any, head: KVBlock, segment_ids: Sequence[int], meta: dict[str, Any] | None = None
) -> KVBlock:
    """The KV of `segment_ids` computed right after `head` (positions continue the head's);
    the block holds the segment's tokens only."""
    n = len(segment_ids)
    if n < 1:
        raise ValidationError("a segment needs at least 1 token")
    cache = reuse_cache(head, model)
    ids = torch.tensor([list(segment_ids)], device=_device(model))
    extra = {"logits_to_keep": 1} if _takes(model, "logits_to_keep") else {}
    with torch.no_grad():
        out = model(ids, use_cache=True, **{cache_kwarg(model): cache}, **extra)
    start = head.n_tokens
    positions = torch.arange(start, start + n, dtype=torch.int32)
    layers: list[DenseLayer] = []
    for keys, values in layer_kv(output_cache(out)):
        k, v = keys[0, :, -n:].cpu().contiguous(), values[0, :, -n:].cpu().contiguous()
        layers.append(DenseLayer(k, v, positions.expand(k.shape[0], -1).contiguous()))
    return KVBlock(
        layers=list(layers),
        token_ids=[int(t) for t in segment_ids],
        model_fingerprint=head.model_fingerprint,
        tokenizer_hash=head.tokenizer_hash,
        dtype=head.dtype,
        meta=dict(meta or {}),
    )


def composable(compressor: Compressor | None) -> Compressor | None:
    """`compressor` when no step of its chain evicts tokens, else None (stored plain)."""
    step = compressor
    while step is not None:
        if isinstance(step, Evictor):
            return None
        step = step.inner
    return compressor


def keeps_every_token(block: KVBlock) -> bool:
    return all(layer.tokens == block.n_tokens for layer in block.layers)


def _takes(model: Any, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def _first_position(block: KVBlock) -> int:
    return int(block.layers[0].positions[0, 0])


def assemble(
    model: Any, head: KVBlock, segments: Sequence[KVBlock], dtype: torch.dtype | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int]]:
    """Per layer, the head's and the segments' keys (re-rotated) and values, concatenated:
    [kv_heads, tokens, head_dim] each, and the prompt's token ids."""
    for block in (head, *segments):
        if not keeps_every_token(block):
            raise ValidationError("only blocks that keep every token compose (no eviction)")
    dtype = dtype or next(model.parameters()).dtype
    inv_freq = rotary_frequencies(model)
    keys: list[list[torch.Tensor]] = [[] for _ in head.layers]
    values: list[list[torch.Tensor]] = [[] for _ in head.layers]
    for index, layer in enumerate(head.layers):
        k, v = layer.dense(dtype)
        keys[index].append(k)
        values[index].append(v)
    token_ids = list(head.token_ids)
    for block in segments:
        if len(block.layers) != len(head.layers):
            raise ValidationError("a segment block was built for another model")
        delta = torch.tensor(len(token_ids) - _first_position(block))
        for index, layer in enumerate(block.layers):
            k, v = layer.dense(dtype)
            keys[index].append(shift_keys(k, delta, inv_freq) if int(delta) else k)
            values[index].append(v)
        token_ids.extend(block.token_ids)
    return (
        [torch.cat(parts, dim=1) for parts in keys],
        [torch.cat(parts, dim=1) for parts in values],
        token_ids,
    )


def _decoder(model: Any) -> Any | None:
    """The base model whose `layers` a forward walks, when the model has that shape."""
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    return base if isinstance(layers, torch.nn.ModuleList) else None


@contextmanager
def _first_layers(base: Any, count: int) -> Iterator[None]:
    layers, total = base.layers, base.config.num_hidden_layers
    base.layers = torch.nn.ModuleList(list(layers)[:count])
    base.config.num_hidden_layers = count
    try:
        yield
    finally:
        base.layers, base.config.num_hidden_layers = layers, total


def deviation(
    model: Any, keys: list[torch.Tensor], values: list[torch.Tensor], token_ids: list[int]
) -> torch.Tensor | None:
    """Per token, how far the assembled layer-1 keys and values are from a full prefill's
    ([tokens]); None when the model's layers cannot be walked separately."""
    base = _decoder(model)
    if base is None or len(keys) < SELECT_LAYERS:
        return None
    ids = torch.tensor([token_ids], device=_device(model))
    with torch.no_grad(), _first_layers(base, SELECT_LAYERS):
        out = base(input_ids=ids, use_cache=True)
    fresh_k, fresh_v = layer_kv(output_cache(out))[SELECT_LAYERS - 1]
    layer = SELECT_LAYERS - 1
    dk = (fresh_k[0].float().cpu() - keys[layer].float()).pow(2).sum(dim=(0, 2))
    dv = (fresh_v[0].float().cpu() - values[layer].float()).pow(2).sum(dim=(0, 2))
    return dk + dv


def select_tokens(
    model: Any,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    token_ids: list[int],
    start: int,
    starts: Sequence[int],
    share: float,
) -> list[int]:
    """Positions (sorted, ≥ `start`) to recompute: the `share` of the memory tokens with the
    highest deviation; without a layer walk, the first tokens of each segment."""
    total = len(token_ids) - start
    count = min(total, max(1, round(total * share))) if share > 0 and total > 0 else 0
    if count == 0:
        return []
    scores = deviation(model, keys, values, token_ids)
    if scores is None:
        per = max(1, count // max(1, len(starts)))
        chosen = {s + i for s in starts for i in range(per)}
        return sorted(p for p in chosen if start <= p < len(token_ids))[:count]
    top = torch.topk(scores[start:], count).indices + start
    return sorted(int(p) for p in top)


def recompute(
    model: Any,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    token_ids: list[int],
    chosen: list[int],
) -> None:
    """Replace the entries at `chosen` positions, in place, by a forward of those tokens
    through every layer over the reused entries of the rest (causal by position)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not chosen:
        return
    n = len(token_ids)
    device, dtype = _device(model), keys[0].dtype
    picked = torch.tensor(chosen)
    keep = torch.ones(n, dtype=torch.bool)
    keep[picked] = False
    others = torch.nonzero(keep).flatten()
    cache = DynamicCache()
    cache.layers = []
    for k, v in zip(keys, values, strict=True):
        layer = DynamicLayer()
        layer.update(k[:, others].unsqueeze(0).to(device), v[:, others].unsqueeze(0).to(device))
        cache.layers.append(layer)
    visible = torch.cat(
        [others[None, :] < picked[:, None], picked[None, :] <= picked[:, None]], dim=1
    )
    mask = torch.zeros(visible.shape, dtype=dtype).masked_fill(~visible, torch.finfo(dtype).min)
    ids = torch.tensor([[token_ids[p] for p in chosen]], device=device)
    extra = {"logits_to_keep": 1} if _takes(model, "logits_to_keep") else {}
    with torch.no_grad():
        out = model(
            ids,
            attention_mask=mask[None, None].to(device),
            position_ids=picked[None].to(device),
            use_cache=True,
            **{cache_kwarg(model): cache},
            **extra,
        )
    s = len(chosen)
    for index, (k, v) in enumerate(layer_kv(output_cache(out))):
        keys[index][:, picked] = k[0, :, -s:].to(dtype).cpu()
        values[index][:, picked] = v[0, :, -s:].to(dtype).cpu()


def compose(  # the caller holds the model's lock: the layer walk swaps its layers briefly
    model: Any,
    head: KVBlock,
    segments: Sequence[KVBlock],
    share: float = 0.15,
    meta: dict[str, Any] | None = None,
) -> tuple[KVBlock, int]:
    """The block of head + segments (in order), with `share` of the memory tokens
    recomputed; returns it (dense, in the model's dtype) and the count recomputed."""
    if not 0 <= share <= 1:
        raise ValidationError(f"the recomputed share must be within [0, 1], got {share}")
    keys, values, token_ids = assemble(model, head, segments)
    starts, at = [], head.n_tokens
    for block in segments:
        starts.append(at)
        at += block.n_tokens
    chosen = select_tokens(model, keys, values, token_ids, head.n_tokens, starts, share)
    recompute(model, keys, values, token_ids, chosen)
    positions = torch.arange(len(token_ids), dtype=torch.int32)
    layers = [
        DenseLayer(k, v, positions.expand(k.shape[0], -1).contiguous())
        for k, v in zip(keys, values, strict=True)
    ]
    block = KVBlock(
        layers=list(layers),
        token_ids=token_ids,
        model_fingerprint=head.model_fingerprint,
        tokenizer_hash=head.tokenizer_hash,
        dtype=str(keys[0].dtype).removeprefix("torch."),
        meta=dict(meta or {}),
    )
    return block, len(chosen)
