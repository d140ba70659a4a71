"""Identities a stored KV cache is checked against: the model, the tokenizer, the prefix."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch

# Config keys that do not change what a model computes.
_IGNORED_CONFIG = {"_name_or_path", "transformers_version", "_attn_implementation_autoset"}
_SAMPLES_PER_TENSOR = 4096


def model_fingerprint(model: Any) -> str:
    """sha256 over the config (minus paths and versions), every parameter's name, shape and
    dtype, and a strided sample of its values: cheap even for a large checkpoint, and any
    retraining or different weights change it."""
    digest = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if k not in _IGNORED_CONFIG}
    config = {k: v for k, v in config.items() if not k.startswith("_attn_implementation")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
            digest.update(flat[::step][:_SAMPLES_PER_TENSOR].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def tokenizer_hash(tokenizer: Any | None) -> str | None:
    """sha256 of the tokenizer's vocabulary and rules (runtime padding/truncation excluded)."""
    if tokenizer is None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("padding", None)
        spec.pop("truncation", None)
    else:
        spec = {"vocab": sorted(tokenizer.get_vocab().items())}
    spec["class"] = type(tokenizer).__name__
    spec["special"] = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def chain_start(fingerprint: str, method: str) -> bytes:
    return hashlib.sha256(f"engram-kv|{fingerprint}|{method}".encode()).digest()


def chain_next(previous: bytes, chunk: Sequence[int]) -> bytes:
    """Hash of a token chunk chained onto the hash of everything before it (LMCache's keys)."""
    data = b"".join(int(t).to_bytes(4, "little", signed=False) for t in chunk)
    return hashlib.sha256(previous + len(chunk).to_bytes(4, "little") + data).digest()


def prefix_key(fingerprint: str, method: str, token_ids: Sequence[int], chunk: int) -> str:
    """The store key of a prefix: chained hashes over its `chunk`-token chunks."""
    digest = chain_start(fingerprint, method)
    for start in range(0, len(token_ids), chunk):
        digest = chain_next(digest, token_ids[start : start + chunk])
    return digest.hex()[:32]
