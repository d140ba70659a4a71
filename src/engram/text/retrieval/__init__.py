"""Retrieval pipelines by name: one registry read by config validation and construction."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from engram.errors import ConfigError
from engram.text.retrieval.base import QueryContext, Retriever
from engram.text.retrieval.bm25 import BM25Retriever
from engram.text.retrieval.dense import DenseRetriever
from engram.text.retrieval.fusion import Fusion, RRFFusion, ZScoreFusion
from engram.text.retrieval.hybrid import HYBRID_PARTS, hybrid
from engram.text.retrieval.iterative import IterativeRetriever
from engram.text.retrieval.router import AdaptiveRetriever, QueryRouter, Route

PIPELINES: dict[str, Callable[[], Retriever]] = {}


def register_pipeline(name: str, factory: Callable[[], Retriever]) -> None:
    """Make a retrieval pipeline selectable by name (config `search.pipeline`, CLI, bench)."""
    PIPELINES[name] = factory


def build_pipeline(name: str) -> Retriever:
    factory = PIPELINES.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown retrieval pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}"
        )
    return factory()


register_pipeline("bm25", BM25Retriever)
register_pipeline("dense", DenseRetriever)
register_pipeline("rrf", lambda: RRFFusion([BM25Retriever(), DenseRetriever()]))
register_pipeline("zscore", lambda: ZScoreFusion([BM25Retriever(), DenseRetriever()]))
register_pipeline("hybrid", hybrid)
register_pipeline(
    "adaptive",
    lambda: AdaptiveRetriever(single=hybrid(), iterative=IterativeRetriever(hybrid().scorer)),
)
for _part in HYBRID_PARTS:
    register_pipeline(f"hybrid-no-{_part}", partial(hybrid, without=_part))

__all__ = [
    "PIPELINES",
    "AdaptiveRetriever",
    "BM25Retriever",
    "DenseRetriever",
    "Fusion",
    "IterativeRetriever",
    "QueryRouter",
    "QueryContext",
    "RRFFusion",
    "Retriever",
    "Route",
    "ZScoreFusion",
    "build_pipeline",
    "register_pipeline",
]
