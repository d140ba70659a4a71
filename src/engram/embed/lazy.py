"""An embedder built on first use (`Memory(embedder=callable)`): reading memories never
loads a model."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from engram.embed.base import Embedder
from engram.errors import ConfigError


class LazyEmbedder(Embedder):
    """An embedder built on first use, so reading memories never loads a model. `on_load`
    checks the built embedder against the store before it embeds anything."""

    def __init__(self, build: Callable[[], Embedder], on_load: Callable[[Embedder], None]):
        self._build, self._on_load = build, on_load
        self._inner: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def inner(self) -> Embedder:
        with self._lock:
            if self._inner is None:
                inner = self._build()
                if not isinstance(inner, Embedder):
                    raise ConfigError(f"the embedder factory returned {type(inner).__name__}")
                self._on_load(inner)  # EmbedderMismatchError leaves it unloaded
                self._inner = inner
            return self._inner

    @property
    def loaded(self) -> bool:
        return self._inner is not None

    # Embedder declares name/dim as plain attributes; here they are read-only views of the
    # built embedder (as in OwnerEmbedder), which mypy reports as an override.
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.inner.dim

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def _embed_for(self, owner: str, texts: list[str]) -> np.ndarray:
        return self.inner.for_owner(owner).embed(texts)
