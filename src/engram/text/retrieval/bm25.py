"""Lexical retrieval: BM25 over the cube's own statistics, top-k of the matching memories.

SQLite FTS5's bm25() computes IDF and the mean document length over the whole table, that
is over every owner's memories: thirty rows written by another owner moved one owner's
score from 0.47 to 1e-6. Scores here come from the cube's lexicon (engram.text.retrieval.
lexicon: per-cube document frequencies and lengths, the same BM25 as the hybrid pipeline's
turn part), so nothing another owner writes can move them.
"""

from __future__ import annotations

from dataclasses import dataclass

from engram.store.base import Scored
from engram.store.vector_index import top_k
from engram.text.retrieval.base import QueryContext, Retriever
from engram.text.retrieval.scorer import filter_mask
from engram.text.retrieval.signals import LexicalSignal


@dataclass
class BM25Retriever(Retriever):
    name: str = "bm25"
    k1: float = 1.2
    b: float = 0.75

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        snap = ctx.snapshot
        if len(snap) == 0:
            return []
        scores = LexicalSignal("turn", k1=self.k1, b=self.b)(ctx)
        matched = scores > 0  # like a MATCH: only memories that contain a query term
        allowed = filter_mask(ctx)
        mask = matched if allowed is None else matched & allowed
        return [Scored(key, score) for key, score in top_k(snap.keys, scores, k, mask)]
