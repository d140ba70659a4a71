"""Adaptive retrieval (Adaptive-RAG, "When to Retrieve"): a cheap classifier of the query
picks no retrieval, single-shot retrieval, or iterative retrieval, per query.

The classifier is a handful of rules over the query text — no model, microseconds:

- `none`: small talk with nothing to look up ("thanks!", "hi", "ok") — no content word;
- `iterative`: questions that gather several facts ("what pets does Maya have?",
  "what do Jon and Gina both like?", "which books has she read?"): a plural object after
  what/which, or words of aggregation (both, in common, ever, several, how many times);
- `single`: everything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from engram.store.base import Scored
from engram.text.query import STOPWORDS
from engram.text.retrieval.base import QueryContext, Retriever

if TYPE_CHECKING:
    from engram.text.retrieval.scorer import Scorer

_WORD = re.compile(r"\w+", re.UNICODE)
_SMALL_TALK = frozenset(
    """hi hello hey thanks thank thx ok okay cool great nice bye goodbye good morning evening
    night yes no yeah yep nope sure lol haha wow please welcome cheers""".split()
)
_AGGREGATE = re.compile(
    r"\b(both|in common|all the|what are some|ever|several|various|how many times)\b", re.I
)
_PLURAL_OBJECT = re.compile(r"^\s*(?:what|which)\s+(?:\w+\s+){0,2}?(\w{3,}s)\b(?!')", re.I)
# words ending in s that are not plural objects of the question
_NOT_PLURAL = frozenset(
    """is was has does this his hers its yours theirs us series news plus bus gas class miss
    boss less unless always perhaps whereas across famous various serious dress business
    process address success stress fitness illness happiness focus status bonus chaos
    christmas yes thus whose analysis basis crisis tennis""".split()
)


class Route(StrEnum):
    NONE = "none"
    SINGLE = "single"
    ITERATIVE = "iterative"


@dataclass(frozen=True)
class QueryRouter:
    def route(self, query: str) -> Route:
        words = [w.lower() for w in _WORD.findall(query)]
        content = [w for w in words if w not in STOPWORDS and w not in _SMALL_TALK]
        if not content:
            return Route.NONE
        if _AGGREGATE.search(query):
            return Route.ITERATIVE
        plural = _PLURAL_OBJECT.match(query)
        if plural and plural.group(1).lower() not in _NOT_PLURAL:
            return Route.ITERATIVE
        return Route.SINGLE


@dataclass
class AdaptiveRetriever(Retriever):
    """Dispatches each query to the retriever its route names (none → no hits)."""

    single: Retriever
    iterative: Retriever
    router: QueryRouter = field(default_factory=QueryRouter)
    name: str = "adaptive"

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        route = self.router.route(ctx.query)
        if route is Route.NONE:
            return []
        chosen = self.iterative if route is Route.ITERATIVE else self.single
        return chosen.retrieve(ctx, k)

    def feedback_base(self) -> tuple[Scorer, float] | None:
        """Most queries take the single-shot route; the iterative one shares its scorer."""
        return self.single.feedback_base()
