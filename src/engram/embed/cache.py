"""An LRU cache in front of any embedder (wrapping, not a flag).

Entries are kept per owner: a cache shared by every owner answers a text some other owner
stored or searched for several times faster than a new one, and that timing would tell
one tenant what another has written. Each owner sees only the entries of its own calls
(`Embedder.for_owner`); calls made for no owner (extraction jobs, benchmarks) share a
namespace of their own that no owner's call reads.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from engram.embed.base import Embedder

NO_OWNER = ""  # the namespace of calls made for no owner; owner ids are never empty


class CachedEmbedder(Embedder):
    """Remembers the vectors of the last `capacity` distinct (owner, text) pairs."""

    def __init__(self, inner: Embedder, capacity: int = 8192):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.capacity = capacity
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(text: str, owner: str = NO_OWNER) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        scope = owner.encode("utf-8")
        digest.update(len(scope).to_bytes(4, "big") + scope)  # length-prefixed: unambiguous
        digest.update(text.encode("utf-8"))
        return digest.digest()

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self._embed_for(NO_OWNER, texts)

    def _embed_for(self, owner: str, texts: list[str]) -> np.ndarray:
        keys = [self._key(t, owner) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                vec = self._cache.get(key)
                if vec is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._cache.move_to_end(key)
                    out[i] = vec
            self.hits += len(texts) - sum(len(v) for v in missing.values())
            self.misses += len(missing)
        if missing:
            firsts = [positions[0] for positions in missing.values()]
            fresh = self.inner.for_owner(owner).embed([texts[i] for i in firsts])
            with self._lock:
                for (key, positions), vec in zip(missing.items(), fresh, strict=True):
                    out[positions] = vec
                    if self.capacity:
                        self._cache[key] = vec
                        if len(self._cache) > self.capacity:
                            self._cache.popitem(last=False)
        return out

    def close(self) -> None:
        self.inner.close()
