"""Identities a stored KV cache is checked against: the model (`engram.lm.fingerprint`,
shared with adapters), the tokenizer, the prefix."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from engram.lm.fingerprint import model_fingerprint

__all__ = ["chain_next", "chain_start", "model_fingerprint", "prefix_key", "tokenizer_hash"]


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
