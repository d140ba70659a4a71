"""The adaptive router: its routes, the iterative retriever, and the `adaptive` pipeline."""

from __future__ import annotations

import pytest

from engram import Memory
from engram.text.retrieval import IterativeRetriever, QueryRouter, Route
from engram.text.retrieval.hybrid import hybrid

ROUTER = QueryRouter()


@pytest.mark.parametrize(
    "query, route",
    [
        ("thanks!", Route.NONE),
        ("Hi", Route.NONE),
        ("ok, cool", Route.NONE),
        ("   ", Route.NONE),
        ("What pets does Maya have?", Route.ITERATIVE),
        ("Which books has Tomas read?", Route.ITERATIVE),
        ("What do Jon and Gina both like?", Route.ITERATIVE),
        ("What hobbies do they have in common?", Route.ITERATIVE),
        ("Has Maya ever been to Lisbon?", Route.ITERATIVE),
        ("What is Maya's job?", Route.SINGLE),  # "is" is not a plural object
        ("What does Tomas do on weekends?", Route.SINGLE),
        ("When did Maya adopt the cat?", Route.SINGLE),
        ("Where was the team dinner?", Route.SINGLE),
    ],
)
def test_routes(query: str, route: Route) -> None:
    assert ROUTER.route(query) is route


FACTS = [
    "Maya adopted a grey cat named Pixel.",
    "Maya also has a parrot that talks in the morning.",
    "Tomas repaired his bicycle chain on Sunday.",
    "Maya's parrot learned to say hello.",
    "Tomas is reading a novel about sailors.",
    "The bakery on Elm street sells rye bread.",
    "Maya bought a fish tank for her goldfish.",
    "Tomas went climbing with his cousin.",
    "Maya and Tomas met at the harbour festival.",
    "The weather was rainy all week.",
    "Maya's cat sleeps on the windowsill.",
    "Tomas cooked a mushroom risotto.",
]


@pytest.fixture
def seeded(memory: Memory) -> Memory:
    memory.add(
        [{"role": "user", "content": f, "name": "Maya"} for f in FACTS],
        user_id="alice",
        session_id="s1",
    )
    return memory


def test_small_talk_retrieves_nothing(seeded: Memory) -> None:
    assert seeded.search("thanks!", user_id="alice", pipeline="adaptive") == []
    assert seeded.search("thanks!", user_id="alice")  # the default pipeline still answers


def test_single_route_equals_hybrid(seeded: Memory) -> None:
    query = "When did Tomas repair the bicycle?"
    assert ROUTER.route(query) is Route.SINGLE
    adaptive = seeded.search(query, user_id="alice", k=5, pipeline="adaptive")
    default = seeded.search(query, user_id="alice", k=5, pipeline="hybrid")
    assert [h.id for h in adaptive] == [h.id for h in default]


def test_iterative_keeps_the_head_and_stays_ordered(seeded: Memory) -> None:
    query = "What pets does Maya have?"
    k = 6
    default = seeded.search(query, user_id="alice", k=k, pipeline="hybrid")
    iterative = seeded.search(query, user_id="alice", k=k, pipeline="adaptive")
    head = round(k * IterativeRetriever(hybrid().scorer).keep)
    assert [h.id for h in iterative[:head]] == [h.id for h in default[:head]]
    assert len(iterative) == k and len({h.id for h in iterative}) == k
    scores = [h.score for h in iterative]
    assert scores == sorted(scores, reverse=True)


def test_iterative_respects_filters(seeded: Memory) -> None:
    seeded.add("Maya's hamster runs at night.", user_id="alice", session_id="s2")
    hits = seeded.search(
        "What pets does Maya have?", user_id="alice", session_id="s2", k=5, pipeline="adaptive"
    )
    assert [h.memory for h in hits] == ["Maya's hamster runs at night."]


def test_iterative_on_a_small_cube_returns_all(memory: Memory) -> None:
    memory.add(["Maya has a cat.", "Maya has a parrot."], user_id="bob")
    hits = memory.search("What pets does Maya have?", user_id="bob", k=5, pipeline="adaptive")
    assert len(hits) == 2
