"""Retrieval pipelines: every registered pipeline, BM25, dense, and the fusion arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from engram import Memory
from engram.store.base import MemoryFilter, Scored
from engram.text.query import query_terms
from engram.text.retrieval import (
    PIPELINES,
    BM25Retriever,
    DenseRetriever,
    QueryContext,
    Retriever,
    RRFFusion,
    ZScoreFusion,
    build_pipeline,
)

CORPUS = [
    "My sister Maria lives in Lisbon and works as a nurse.",
    "I adopted a golden retriever puppy last spring.",
    "The WiFi password at the cabin is tangerine42.",
    "I am training for a marathon in October.",
    "My favourite author is Ursula K. Le Guin.",
    "We repainted the living room a pale blue colour.",
    "I take the 7:15 train to the office every weekday.",
    "My grandmother taught me to bake apple strudel.",
    "I am learning Japanese with an app on my phone.",
    "The car needs new winter tyres before December.",
]


@pytest.fixture
def corpus(memory: Memory) -> dict[str, str]:
    return {item.memory: item.id for item in memory.add(CORPUS, user_id="alice")}


@pytest.mark.parametrize("name", sorted(PIPELINES))
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("Where does my sister Maria live?", CORPUS[0], id="sister"),
        pytest.param("What is the WiFi password at the cabin?", CORPUS[2], id="wifi"),
        pytest.param("When is the marathon I am training for?", CORPUS[3], id="marathon"),
        pytest.param("Who taught me to bake strudel?", CORPUS[7], id="strudel"),
    ],
)
def test_every_registered_pipeline_finds_the_obvious_memory(
    memory: Memory, corpus: dict[str, str], name: str, query: str, expected: str
) -> None:
    hits = memory.search(query, user_id="alice", k=3, pipeline=name)
    assert 1 <= len(hits) <= 3
    assert corpus[expected] in [h.id for h in hits], (name, [h.memory for h in hits])
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_pipeline_respects_filters_and_k(
    memory: Memory, corpus: dict[str, str], name: str
) -> None:
    [tagged] = memory.add(
        "The cabin has a wood stove.", user_id="alice", metadata={"place": "cabin"}
    )
    hits = memory.search(
        "cabin WiFi password", user_id="alice", pipeline=name, filters={"place": "cabin"}
    )
    assert [h.id for h in hits] == [tagged.id]
    assert len(memory.search("anything about my life", user_id="alice", k=2, pipeline=name)) <= 2


def test_registry_is_the_config_vocabulary() -> None:
    assert {"bm25", "dense", "rrf", "hybrid"} <= set(PIPELINES)
    for name in PIPELINES:
        assert isinstance(build_pipeline(name), Retriever)


def test_bm25_exact_term_match(memory: Memory, corpus: dict[str, str]) -> None:
    hits = memory.search("tangerine42", user_id="alice", pipeline="bm25")
    assert [h.id for h in hits] == [corpus[CORPUS[2]]]
    assert hits[0].score > 0
    # stemming: "tyre" matches "tyres"; case does not matter
    assert memory.search("TYRE", user_id="alice", pipeline="bm25")[0].id == corpus[CORPUS[9]]
    # a word that occurs nowhere finds nothing lexically
    assert memory.search("xylophone", user_id="alice", pipeline="bm25") == []


def test_bm25_does_not_match_the_internal_cube_token(
    memory: Memory, corpus: dict[str, str]
) -> None:
    """The FTS index holds a per-owner token ('c1', 'c2' ...) in a second column; a query word
    must only ever match what the memory says, never that bookkeeping column."""
    assert not any(f"c{n}" in text.lower().split() for text in CORPUS for n in range(10))
    for query in ("c1", "c2", "c1 c2 c3 c4 c5 c6 c7 c8 c9"):
        hits = memory.search(query, user_id="alice", pipeline="bm25")
        assert hits == [], (query, [h.memory for h in hits])


def test_bm25_prefers_rarer_and_repeated_terms(memory: Memory) -> None:
    items = memory.add(
        [
            "The meeting is about the budget.",
            "The budget budget budget review is about the quarterly budget.",
            "The meeting is at noon.",
        ],
        user_id="bob",
    )
    hits = memory.search("budget", user_id="bob", pipeline="bm25")
    assert [h.id for h in hits] == [items[1].id, items[0].id]


def test_dense_matches_a_paraphrase_without_shared_words(
    memory: Memory, corpus: dict[str, str]
) -> None:
    query = "What kind of dog do I have?"
    assert memory.search(query, user_id="alice", pipeline="bm25") == []  # no word in common
    dense = memory.search(query, user_id="alice", pipeline="dense", k=1)
    assert dense[0].id == corpus[CORPUS[1]]
    hybrid = memory.search(query, user_id="alice", pipeline="hybrid", k=1)
    assert hybrid[0].id == corpus[CORPUS[1]]


def test_hybrid_combines_both_signals(memory: Memory, corpus: dict[str, str]) -> None:
    # lexical anchor ("tangerine42") plus semantics ("internet", "code") both point at one memory
    hits = memory.search("internet code tangerine42", user_id="alice", k=3, pipeline="hybrid")
    assert hits[0].id == corpus[CORPUS[2]]


def test_query_terms() -> None:
    assert query_terms("What is the WiFi password?") == ["wifi", "password"]
    assert query_terms("the and of") == ["the", "and", "of"]  # all stopwords: keep them
    assert query_terms("Cats cats CATS dogs") == ["cats", "dogs"]
    assert query_terms('"NEAR(x) AND y*"') == ["near", "x", "y"]
    assert query_terms("!!! ???") == []
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 64


# -- fusion arithmetic on fixed lists --------------------------------------------------------------


@dataclass
class Fixed(Retriever):
    """A real retriever whose ranking is given in advance."""

    ranked: list[Scored] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)
    name: str = "fixed"

    def retrieve(self, ctx: QueryContext, k: int) -> list[Scored]:
        self.asked.append(k)
        return self.ranked[:k]


def _ctx(candidates: int = 100) -> QueryContext:
    return QueryContext(
        store=None,
        cube=0,
        query="q",
        flt=MemoryFilter(),  # type: ignore[arg-type]
        embed=lambda q: np.zeros(4, dtype=np.float32),
        candidates=candidates,
    )


def S(*pairs: tuple[int, float]) -> list[Scored]:
    return [Scored(k, s) for k, s in pairs]


def test_rrf_fusion_math() -> None:
    a = Fixed(S((1, 9.0), (2, 8.0), (3, 7.0)))
    b = Fixed(S((3, 0.9), (1, 0.5), (4, 0.1)))
    fused = RRFFusion([a, b]).retrieve(_ctx(), 10)
    expected = {1: 1 / 61 + 1 / 62, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 63}
    assert [s.key for s in fused] == [1, 3, 2, 4]
    for s in fused:
        assert s.score == pytest.approx(expected[s.key], rel=1e-12)


def test_rrf_constant_and_weights() -> None:
    a = Fixed(S((1, 1.0), (2, 0.5)))
    b = Fixed(S((2, 1.0), (1, 0.5)))
    fused = RRFFusion([a, b], weights=[3.0, 1.0], c=0.0).retrieve(_ctx(), 10)
    # key 1: 3*(1/1) + 1*(1/2) = 3.5 ; key 2: 3*(1/2) + 1*(1/1) = 2.5
    assert [(s.key, s.score) for s in fused] == [(1, pytest.approx(3.5)), (2, pytest.approx(2.5))]


def test_zscore_fusion_math_with_floor_for_missing_keys() -> None:
    a = Fixed(S((1, 3.0), (2, 2.0), (3, 1.0)))
    b = Fixed(S((3, 10.0), (4, 0.0)))
    fused = ZScoreFusion([a, b]).retrieve(_ctx(), 10)
    sd_a = np.sqrt(2 / 3)
    za = {1: 1 / sd_a, 2: 0.0, 3: -1 / sd_a}
    zb = {3: 1.0, 4: -1.0}
    floor_a, floor_b = min(za.values()), min(zb.values())
    expected = {key: za.get(key, floor_a) + zb.get(key, floor_b) for key in (1, 2, 3, 4)}
    assert [s.key for s in fused] == sorted(expected, key=lambda k: -expected[k])
    assert [s.key for s in fused] == [1, 3, 2, 4]
    for s in fused:
        assert s.score == pytest.approx(expected[s.key], abs=1e-9)


def test_zscore_constant_scores_and_empty_lists() -> None:
    flat = Fixed(S((5, 2.0), (6, 2.0)))
    empty = Fixed([])
    fused = ZScoreFusion([flat, empty]).retrieve(_ctx(), 10)
    assert [(s.key, s.score) for s in fused] == [(5, 0.0), (6, 0.0)]  # sd 0 -> 1, ties by key
    assert ZScoreFusion([Fixed([]), Fixed([])]).retrieve(_ctx(), 10) == []


def test_fusion_asks_for_candidates_and_truncates_to_k() -> None:
    a = Fixed(S(*[(i, 100.0 - i) for i in range(50)]))
    b = Fixed(S(*[(i, float(i)) for i in range(50)]))
    fused = RRFFusion([a, b]).retrieve(_ctx(candidates=30), 5)
    assert len(fused) == 5
    assert a.asked == [30] and b.asked == [30]
    RRFFusion([a, b]).retrieve(_ctx(candidates=3), 8)
    assert a.asked[-1] == 8  # never fewer than k


def test_fusion_needs_retrievers_and_matching_weights() -> None:
    with pytest.raises(ValueError, match="at least one retriever"):
        RRFFusion([])
    with pytest.raises(ValueError, match="one weight per retriever"):
        ZScoreFusion([Fixed([])], weights=[1.0, 2.0])


def test_a_custom_registered_pipeline_is_usable_by_name(
    memory: Memory, corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        PIPELINES,
        "bm25-heavy",
        lambda: RRFFusion([BM25Retriever(), DenseRetriever()], weights=[5.0, 1.0]),
    )
    hits = memory.search("tangerine42", user_id="alice", pipeline="bm25-heavy", k=1)
    assert hits[0].id == corpus[CORPUS[2]]
