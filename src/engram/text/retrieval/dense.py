"""Dense retrieval: cosine similarity between the query and memory embeddings."""

from __future__ import annotations

from dataclasses import dataclass

from engram.store.base import Scored
from engram.text.retrieval.base import QueryContext, Retriever


@dataclass
class DenseRetriever(Retriever):
    name: str = "dense"

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        return ctx.store.dense(ctx.cube, ctx.vector, k, ctx.flt)
