"""Tiered store of KV blocks: an in-RAM LRU with a byte budget in front of a directory.

Keys are chained hashes over token chunks (as LMCache does), salted with the model
fingerprint and the compression method, so `longest_prefix` finds the longest stored
block a prompt starts with by hashing the prompt once per chunk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engram.activation.block import KVBlock
from engram.activation.errors import KVCorruptError
from engram.activation.fingerprint import chain_next, chain_start, prefix_key
from engram.activation.format import load_block, read_manifest, save_block
from engram.errors import NotFoundError, ValidationError

DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class KVEntry:
    """What `ls` shows about one stored block (read from its manifest)."""

    key: str
    n_tokens: int
    model_fingerprint: str
    method: str
    nbytes: int
    fp16_nbytes: int
    created_at: str
    meta: dict[str, Any]

    @property
    def method_name(self) -> str:
        """The compression chain as one string: '' for none, else e.g. 'snapkv+kivi'."""
        return "+".join(step["name"] for step in json.loads(self.method))

    @classmethod
    def of(cls, key: str, block: KVBlock) -> KVEntry:
        """The entry of a block just stored under `key`."""
        return cls(
            key=key,
            n_tokens=block.n_tokens,
            model_fingerprint=block.model_fingerprint,
            method=method_key(block.method),
            nbytes=block.nbytes,
            fp16_nbytes=block.fp16_nbytes,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            meta=dict(block.meta),
        )


def method_key(method: list[dict[str, Any]]) -> str:
    return json.dumps(method, sort_keys=True)


class KVStore:
    """`put` writes through to disk; `get` serves from RAM, else loads from disk into RAM."""

    def __init__(self, root: Path, ram_budget_bytes: int = 256 << 20, chunk: int = DEFAULT_CHUNK):
        if chunk < 1 or ram_budget_bytes < 0:
            raise ValidationError("chunk must be >= 1 and ram_budget_bytes >= 0")
        self.root = Path(root)
        self.ram_budget_bytes = ram_budget_bytes
        self.chunk = chunk
        self._ram: OrderedDict[str, KVBlock] = OrderedDict()
        self._ram_bytes = 0
        self._lock = threading.Lock()
        self.counts = {"ram_hits": 0, "disk_hits": 0, "misses": 0}

    def key_of(self, block: KVBlock) -> str:
        return prefix_key(
            block.model_fingerprint, method_key(block.method), block.token_ids, self.chunk
        )

    def key_for(
        self,
        fingerprint: str,
        method: list[dict[str, Any]],
        token_ids: Sequence[int],
        after: Sequence[int] | None = None,
        scope: str = "",
    ) -> str:
        """The key of a block of `token_ids`; a segment block (computed right `after` other
        tokens, engram.activation.compose) is keyed by those tokens and its `scope` too."""
        mkey = method_key(method)
        if after is not None:
            context = hashlib.sha256(json.dumps([scope, list(after)]).encode()).hexdigest()
            mkey = f"{mkey}|after:{context}"
        return prefix_key(fingerprint, mkey, token_ids, self.chunk)

    def put(self, block: KVBlock, key: str | None = None) -> str:
        """Store `block` under `key` (default: its prefix key); returns the key."""
        key = key or self.key_of(block)
        save_block(block, self.root / key)
        self._remember(key, block)
        return key

    def find(
        self, key: str, fingerprint: str | None = None, tokenizer_hash: str | None = None
    ) -> KVBlock | None:
        """The block stored under `key`, or None."""
        try:
            return self.get(key, fingerprint, tokenizer_hash)
        except NotFoundError:
            return None

    def get(
        self, key: str, fingerprint: str | None = None, tokenizer_hash: str | None = None
    ) -> KVBlock:
        with self._lock:
            block = self._ram.get(key)
            if block is not None:
                self._ram.move_to_end(key)
        if block is not None:
            if fingerprint is not None and block.model_fingerprint != fingerprint:
                load_block(self.root / key, fingerprint, tokenizer_hash)  # raises the mismatch
            self.counts["ram_hits"] += 1
            return block
        if not (self.root / key / "manifest.json").exists():
            self.counts["misses"] += 1
            raise NotFoundError(f"no stored KV cache {key!r} in {self.root}")
        block = load_block(self.root / key, fingerprint, tokenizer_hash)
        self.counts["disk_hits"] += 1
        self._remember(key, block)
        return block

    def _remember(self, key: str, block: KVBlock) -> None:
        if block.nbytes > self.ram_budget_bytes:
            return
        with self._lock:
            old = self._ram.pop(key, None)
            self._ram_bytes -= old.nbytes if old is not None else 0
            self._ram[key] = block
            self._ram_bytes += block.nbytes
            while self._ram_bytes > self.ram_budget_bytes:
                _, evicted = self._ram.popitem(last=False)
                self._ram_bytes -= evicted.nbytes

    def longest_prefix(
        self,
        token_ids: Sequence[int],
        fingerprint: str,
        method: list[dict[str, Any]] | None = None,
        tokenizer_hash: str | None = None,
    ) -> KVBlock | None:
        """The stored block (for this model, and this method when given) covering the longest
        strict prefix of `token_ids`; None when none matches."""
        wanted = None if method is None else method_key(method)
        candidates: dict[str, list[int]] = {}
        for entry in self.entries():
            if entry.model_fingerprint != fingerprint or entry.n_tokens >= len(token_ids):
                continue
            if wanted is None or entry.method == wanted:
                candidates.setdefault(entry.method, []).append(entry.n_tokens)
        best: tuple[int, str] | None = None
        for mkey, lengths in candidates.items():
            for n in sorted(set(lengths), reverse=True):
                if best is not None and n <= best[0]:
                    break
                key = self._chain(fingerprint, mkey, token_ids, n)
                if (self.root / key).is_dir():
                    best = (n, key)
                    break
        if best is None:
            self.counts["misses"] += 1
            return None
        block = self.get(best[1], fingerprint, tokenizer_hash)
        return block if block.token_ids == list(token_ids[: best[0]]) else None

    def _chain(self, fingerprint: str, mkey: str, token_ids: Sequence[int], n: int) -> str:
        digest = chain_start(fingerprint, mkey)
        for start in range(0, n, self.chunk):
            digest = chain_next(digest, token_ids[start : min(n, start + self.chunk)])
        return digest.hex()[:32]

    def entries(self) -> list[KVEntry]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                m = read_manifest(path)
            except KVCorruptError:
                continue  # `stats` counts these; `ls` shows what can be used
            found.append(
                KVEntry(
                    key=path.name,
                    n_tokens=int(m["n_tokens"]),
                    model_fingerprint=m["model_fingerprint"],
                    method=method_key(m["method"]),
                    nbytes=int(m["nbytes"]),
                    fp16_nbytes=int(m["fp16_nbytes"]),
                    created_at=m.get("created_at", ""),
                    meta=m.get("meta", {}),
                )
            )
        return found

    def remove(self, key: str) -> None:
        path = self.root / key
        if not key or "/" in key or key.startswith(".") or not path.is_dir():
            raise NotFoundError(f"no stored KV cache {key!r} in {self.root}")
        with self._lock:
            old = self._ram.pop(key, None)
            self._ram_bytes -= old.nbytes if old is not None else 0
        shutil.rmtree(path)

    def stats(self) -> dict[str, Any]:
        entries = self.entries()
        disk = (
            sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())
            if (self.root.is_dir())
            else 0
        )
        return {
            "root": str(self.root),
            "entries": len(entries),
            "tokens": sum(e.n_tokens for e in entries),
            "stored_bytes": sum(e.nbytes for e in entries),
            "fp16_bytes": sum(e.fp16_nbytes for e in entries),
            "disk_bytes": disk,
            "ram_entries": len(self._ram),
            "ram_bytes": self._ram_bytes,
            "ram_budget_bytes": self.ram_budget_bytes,
            **self.counts,
        }
