"""Activation memory: stored, compressed KV caches that a local model reuses.

    block = build_kv(model, "Maya moved to Lisbon ...", tokenizer, parse_method("kivi:bits=4"))
    key = KVStore(home / "kv").put(block)
    new_tokens = generate(model, block, block.token_ids + question_ids)

Names load on first use (PEP 562), so `engram kv --help` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "KVBlock": "block",
    "build_kv": "build",
    "EngramCache": "cache",
    "COMPRESSORS": "compress",
    "Compressor": "compress",
    "describe": "compress",
    "parse_method": "compress",
    "KVCorruptError": "errors",
    "KVFormatTooNewError": "errors",
    "KVModelMismatchError": "errors",
    "model_fingerprint": "fingerprint",
    "tokenizer_hash": "fingerprint",
    "FORMAT_VERSION": "format",
    "load_block": "format",
    "save_block": "format",
    "kv_store": "memories",
    "materialize": "memories",
    "select_memories": "memories",
    "continuation_logits": "reuse",
    "generate": "reuse",
    "reuse_cache": "reuse",
    "KVEntry": "store",
    "KVStore": "store",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engram.activation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"engram.activation.{_WHERE[name]}"), name)
