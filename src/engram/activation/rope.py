"""Moving stored keys to new positions: RoPE rotates each key by its position, so a key
cached at position p is moved to position p + d by one more rotation of d (rotations add).

Values carry no position and stay as they are. Models whose rotary embedding is not a pure
rotation (dynamic NTK scaling recomputes its frequencies from the sequence length) cannot
be shifted exactly; `rotary_frequencies` refuses them."""

from __future__ import annotations

from typing import Any

import torch

from engram.errors import ValidationError

_SHIFTABLE = {"default", "linear", "llama3", "yarn", None}


def rotary_frequencies(model: Any) -> torch.Tensor:
    """The model's RoPE inverse frequencies ([head_dim / 2], float32)."""
    rope_type = None
    for module in model.modules():
        inv_freq = getattr(module, "inv_freq", None)
        if isinstance(inv_freq, torch.Tensor):
            rope_type = getattr(module, "rope_type", None)
            if rope_type not in _SHIFTABLE:
                raise ValidationError(
                    f"KV blocks cannot be moved to new positions under {rope_type!r} RoPE"
                )
            return inv_freq.detach().float().cpu()
    raise ValidationError("the model has no rotary position embedding to re-encode keys with")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def shift_keys(keys: torch.Tensor, delta: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """`keys` ([..., tokens, head_dim], already rotated to their old positions) rotated by
    `delta` more positions ([tokens] or broadcastable): the keys they would have had at
    their new positions. Computed in float32, returned in the keys' dtype."""
    freqs = delta.float()[..., None] * inv_freq  # [..., tokens, head_dim / 2]
    angles = torch.cat([freqs, freqs], dim=-1)
    k = keys.float()
    return (k * angles.cos() + _rotate_half(k) * angles.sin()).to(keys.dtype)
