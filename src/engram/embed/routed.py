"""Small batches on a light encoder, large ones on a heavy one loaded on first need."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from engram.embed.base import Embedder, EmbeddingError
from engram.embed.cache import NO_OWNER


class BatchRoutedEmbedder(Embedder):
    """Embeds batches of up to `threshold` texts with `small` (a query, one message: the
    numpy encoder, no torch import) and larger ones with the embedder `large()` builds the
    first time one arrives (bulk imports: torch's batched kernels). Both must compute the
    same vector space; construction checks it on a probe text when `large` loads."""

    def __init__(self, small: Embedder, large: Callable[[], Embedder], threshold: int):
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.small, self._build_large, self.threshold = small, large, threshold
        self.name, self.dim = small.name, small.dim
        self._large: Embedder | None = None
        self._lock = threading.Lock()

    def large(self) -> Embedder:
        with self._lock:
            if self._large is None:
                large = self._build_large()
                probe = "Engram checks that both encoders agree."
                agree = float(self.small.embed([probe])[0] @ large.embed([probe])[0])
                if large.dim != self.dim or agree < 0.999:
                    raise EmbeddingError(
                        f"the bulk encoder {large.name!r} disagrees with {self.name!r} "
                        f"(cosine {agree:.4f}); set embedder.small_batch = 0"
                    )
                self._large = large
            return self._large

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self._embed_for(NO_OWNER, texts)

    def _embed_for(self, owner: str, texts: list[str]) -> np.ndarray:
        """Route by the caller's batch size; the owner goes on to each path's coalescer,
        so a batch never mixes owners (see engram.embed.coalesce)."""
        path = self.small if len(texts) <= self.threshold else self.large()
        return path._embed_for(owner, texts)

    def close(self) -> None:
        self.small.close()
        if self._large is not None:
            self._large.close()
