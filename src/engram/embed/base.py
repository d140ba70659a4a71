"""The embedder contract: texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from engram.errors import EngramError


class EmbeddingError(EngramError):
    """The embedding model failed or returned something unusable."""

    code = "embedding_failed"


class Embedder(ABC):
    """Turns texts into unit vectors. `name` and `dim` identify the vector space."""

    name: str
    dim: int

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embed a non-empty batch; may return unnormalised vectors."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` into an (n, dim) float32 array of unit vectors."""
        batch = list(texts)
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._embed(batch), dtype=np.float32)
        if vectors.shape != (len(batch), self.dim):
            raise EmbeddingError(
                f"embedder {self.name!r} returned shape {vectors.shape}, "
                f"expected ({len(batch)}, {self.dim})"
            )
        return normalize(vectors)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def for_owner(self, owner: str) -> Embedder:
        """This embedder as one owner's calls see it. Wrappers that keep state across calls
        (the LRU cache) keep each owner's state apart, so timing never tells one owner what
        another embedded; stateless embedders are shared as they are."""
        if type(self)._embed_for is Embedder._embed_for:
            return self
        return OwnerEmbedder(self, owner)

    def _embed_for(self, owner: str, texts: list[str]) -> np.ndarray:
        """`_embed` on behalf of `owner`; overridden by wrappers with per-owner state."""
        return self._embed(texts)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, models)."""


class OwnerEmbedder(Embedder):
    """`parent` as seen by one owner (`Embedder.for_owner`). Name and dimension are read
    from the parent on use, so a lazily built parent stays unbuilt until a text arrives."""

    def __init__(self, parent: Embedder, owner: str):
        self.parent, self.owner = parent, owner

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.parent.name

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.parent.dim

    def for_owner(self, owner: str) -> Embedder:
        return self.parent.for_owner(owner)

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.parent._embed_for(self.owner, texts)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length; all-zero rows stay zero."""
    if not np.all(np.isfinite(vectors)):
        raise EmbeddingError("embedding contains NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)
