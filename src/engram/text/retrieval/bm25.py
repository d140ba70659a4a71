"""Lexical retrieval: BM25 over the store's full-text index."""

from __future__ import annotations

from dataclasses import dataclass

from engram.store.base import Scored
from engram.text.retrieval.base import QueryContext, Retriever


@dataclass
class BM25Retriever(Retriever):
    name: str = "bm25"

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        return ctx.store.lexical(ctx.cube, ctx.terms, k, ctx.flt)
