"""route='auto': a small router picks text, kv or lora from cheap signals (no model runs).

The `rules` router, in order:
1. lora, when the owner has an adapter and one fact its latest version learned covers at
   least `answer.lora_match` of the question's content words (the adapter knows it);
2. kv, when the owner's activation tier holds KV blocks (the owner uses stored contexts;
   the block of this question's memories is reused, or built for next time);
3. text otherwise.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from engram.errors import ConfigError, NotFoundError, ValidationError
from engram.text.query import STOPWORDS
from engram.tiers import ACTIVATION, PARAMETRIC

if TYPE_CHECKING:
    from engram.config import AnswerConfig
    from engram.cube import MemCube
    from engram.parametric.examples import Fact

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ASKING = frozenset("how many much please tell know remember".split())
_SUFFIXES = ("ing", "ed", "es", "s")


def content_words(text: str) -> set[str]:
    """Lower-cased words without function words, crudely stemmed ('named' ~ 'name')."""
    words = set()
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or word in _ASKING:
            continue
        for suffix in _SUFFIXES:
            if len(word) - len(suffix) >= 3 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        words.add(word[:-1] if len(word) > 3 and word.endswith("e") else word)
    return words


def best_fact(question: str, facts: Iterable[Fact]) -> tuple[Fact | None, float]:
    """The learned fact covering the largest share of the question's content words."""
    asked = content_words(question)
    best: tuple[Fact | None, float] = (None, 0.0)
    if not asked:
        return best
    for fact in facts:
        known = content_words(f"{fact.prompt} {fact.question or ''}")
        share = len(asked & known) / len(asked)
        if share > best[1]:
            best = (fact, share)
    return best


@dataclass(frozen=True)
class RouteSignals:
    """What the router may look at: the question, the adapter's facts, the KV blocks."""

    question: str
    adapter_version: int | None  # None: the owner has no adapter
    adapter_facts: tuple[Fact, ...]
    kv_blocks: int


@dataclass(frozen=True)
class RouteChoice:
    route: str
    reason: str
    matched: Fact | None = None


class AnswerRouter(ABC):
    """Picks a route for route='auto'."""

    name: ClassVar[str]

    @abstractmethod
    def choose(self, signals: RouteSignals) -> RouteChoice: ...


@dataclass(frozen=True)
class RuleRouter(AnswerRouter):
    """lora when the adapter learned a matching fact, kv when blocks exist, else text."""

    name: ClassVar[str] = "rules"
    lora_match: float = 0.6

    def choose(self, signals: RouteSignals) -> RouteChoice:
        if signals.adapter_version is not None:
            fact, share = best_fact(signals.question, signals.adapter_facts)
            if fact is not None and share >= self.lora_match:
                return RouteChoice(
                    "lora",
                    f"adapter v{signals.adapter_version} learned a fact matching the question "
                    f"(memory {fact.memory_id}: {share:.0%} of its content words >= "
                    f"{self.lora_match:.0%})",
                    fact,
                )
        if signals.kv_blocks:
            return RouteChoice(
                "kv", f"the owner's activation tier holds {signals.kv_blocks} KV block(s)"
            )
        adapter = "no adapter fact matches" if signals.adapter_version else "no adapter"
        return RouteChoice("text", f"{adapter} and no KV blocks: retrieve and read as text")


ROUTERS: dict[str, Callable[[AnswerConfig], AnswerRouter]] = {}


def register_router(name: str, factory: Callable[[AnswerConfig], AnswerRouter]) -> None:
    """Make a router selectable by `answer.router`."""
    ROUTERS[name] = factory


def build_router(settings: AnswerConfig) -> AnswerRouter:
    factory = ROUTERS.get(settings.router)
    if factory is None:
        known = ", ".join(sorted(ROUTERS))
        raise ConfigError(f"unknown answer.router {settings.router!r}; known: {known}")
    return factory(settings)


register_router("rules", lambda s: RuleRouter(lora_match=s.lora_match))


def signals_of(cube: MemCube, question: str) -> RouteSignals:
    """The router's signals, read from the cube's tiers' manifests (torch never loads)."""
    from engram.parametric.examples import fact_from_memory

    versions = cube.tiers[PARAMETRIC].held()  # oldest first
    facts: list[Fact] = []
    version = None
    if versions:
        latest = versions[-1]
        version = int(latest.key.removeprefix("v"))
        for memory_id in latest.memory_ids:
            try:
                facts.append(fact_from_memory(cube.get(memory_id)))
            except (NotFoundError, ValidationError):  # erased since, or too short a fact
                continue
    blocks = len(cube.tiers[ACTIVATION].held())
    return RouteSignals(question, version, tuple(facts), blocks)
