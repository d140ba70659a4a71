"""Embedding providers, one registry read by config parsing and construction."""

from __future__ import annotations

from collections.abc import Callable

from engram.config import EmbedderConfig
from engram.embed.base import Embedder, EmbeddingError
from engram.embed.cache import CachedEmbedder
from engram.embed.coalesce import CoalescingEmbedder
from engram.errors import ConfigError

EmbedderFactory = Callable[[EmbedderConfig], Embedder]
EMBEDDERS: dict[str, EmbedderFactory] = {}


def register_embedder(name: str, factory: EmbedderFactory) -> None:
    EMBEDDERS[name] = factory


def _sentence_transformers(cfg: EmbedderConfig) -> Embedder:
    from engram.embed.local import SentenceTransformerEmbedder

    if cfg.bulk_threads:
        import torch

        torch.set_num_threads(cfg.bulk_threads)
    return SentenceTransformerEmbedder(
        cfg.model,
        device=cfg.device,
        batch_size=cfg.batch_size,
        precision=cfg.precision,
        adapter=cfg.adapter,
    )


def _numpy_bert(cfg: EmbedderConfig) -> Embedder:
    from engram.embed.numpy_bert import NumpyBertEmbedder

    return NumpyBertEmbedder(cfg.model, batch_size=cfg.batch_size, adapter=cfg.adapter)


def _coalesced(cfg: EmbedderConfig, embedder: Embedder) -> Embedder:
    return CoalescingEmbedder(embedder, cfg.batch_size) if cfg.coalesce else embedder


def _local(cfg: EmbedderConfig) -> Embedder:
    """Queries and single messages on numpy (fast start), bulk on sentence-transformers.
    Each path coalesces its own callers: a query never queues behind a bulk add's batch."""
    if cfg.small_batch == 0:
        return _coalesced(cfg, _sentence_transformers(cfg))
    from engram.embed.routed import BatchRoutedEmbedder

    return BatchRoutedEmbedder(
        _coalesced(cfg, _numpy_bert(cfg)),
        lambda: _coalesced(cfg, _sentence_transformers(cfg)),
        cfg.small_batch,
    )


def _openai(cfg: EmbedderConfig) -> Embedder:
    from engram.embed.openai import OpenAIEmbedder

    return OpenAIEmbedder(
        cfg.model, cfg.base_url, cfg.api_key, cfg.dimensions, cfg.batch_size, cfg.timeout_s
    )


register_embedder("local", _local)
SELF_COALESCING = {"local"}  # factories that put the coalescer where it belongs themselves
ADAPTABLE = {"local", "numpy-bert", "sentence-transformers"}  # take embedder.adapter
register_embedder("numpy-bert", _numpy_bert)
register_embedder("sentence-transformers", _sentence_transformers)
register_embedder("openai", _openai)


def build_embedder(cfg: EmbedderConfig, recorded: str | None = None) -> Embedder:
    """Construct the configured embedder, wrapped in the LRU cache when enabled. `recorded`:
    the embedder a store's vectors are of, which `adapter = "auto"` follows."""
    if cfg.provider not in ADAPTABLE and cfg.adapter not in ("auto", "none"):
        raise ConfigError(
            f"embedder.adapter changes a local encoder's weights; {cfg.provider!r} has none"
        )
    if cfg.adapter == "auto":
        from engram.embed.adapter import resolve
        from engram.embed.local import DEFAULT_MODEL_NAME

        chosen = None
        if cfg.provider in ADAPTABLE:
            chosen = resolve(cfg.adapter, cfg.model, recorded, DEFAULT_MODEL_NAME)
        cfg = cfg.model_copy(update={"adapter": chosen or "none"})
    factory = EMBEDDERS.get(cfg.provider)
    if factory is None:
        raise ConfigError(f"unknown embedder provider {cfg.provider!r}; known: {sorted(EMBEDDERS)}")
    embedder = factory(cfg)
    if cfg.coalesce and cfg.provider not in SELF_COALESCING:
        embedder = CoalescingEmbedder(embedder, cfg.batch_size)
    return CachedEmbedder(embedder, cfg.cache_size) if cfg.cache_size else embedder


__all__ = [
    "EMBEDDERS",
    "CachedEmbedder",
    "CoalescingEmbedder",
    "Embedder",
    "EmbeddingError",
    "build_embedder",
]
