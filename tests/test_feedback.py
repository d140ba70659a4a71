"""Feedback: recording, validation, erasure, the online reranker and its effect on search."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from _engram_helpers import db_path
from engram import Memory
from engram.embed import Embedder
from engram.errors import NotFoundError, ValidationError
from engram.text.reranker import OnlineReranker
from engram.text.retrieval.feedback import DEFAULT_WEIGHTS, FEATURES

FACTS = [
    "Maya adopted a grey cat from the shelter on Elm street.",
    "Tomas fixed the old bicycle with a new chain.",
    "Maya's sister moved to Lisbon for a design job.",
    "The team dinner was moved to Friday at the harbour restaurant.",
    "Tomas keeps his climbing gear in the garage.",
    "Maya started learning the cello last winter.",
]


@pytest.fixture
def seeded(memory: Memory) -> list[str]:
    items = memory.add(
        [{"role": "user", "content": text} for text in FACTS], user_id="alice", session_id="s1"
    )
    return [item.id for item in items]


def _rank(memory: Memory, query: str, memory_id: str, **kw: object) -> int:
    hits = memory.search(query, user_id="alice", k=len(FACTS), **kw)
    return [h.id for h in hits].index(memory_id)


def test_feedback_is_recorded_with_weights(memory: Memory, seeded: list[str]) -> None:
    result = memory.feedback("Where does Maya's sister live?", cited=[seeded[2]], user_id="alice")
    assert result.owner == "user:alice"
    assert result.recorded == 1
    assert set(result.weights) == set(FEATURES)
    assert all(w >= 0 for w in result.weights.values())
    cube = memory.cube(memory_scope("alice"))
    log = memory.store.feedback(cube.id)
    assert log.queries == ["Where does Maya's sister live?"]
    assert log.labels.tolist() == ["cited"]
    assert log.weights == result.weights


def memory_scope(user: str):  # noqa: ANN201 - tiny local helper
    from engram.scope import Scope

    return Scope.of(user_id=user)


def test_cited_memory_ranks_higher_for_a_similar_query(memory: Memory, seeded: list[str]) -> None:
    """A query with no word in common with the fact: feedback connects them."""
    target = seeded[5]  # the cello
    query = "Which instrument has she been practising?"
    before = _rank(memory, query, target)
    for _ in range(3):
        memory.feedback("What instrument is Maya practising?", cited=[target], user_id="alice")
    after = _rank(memory, query, target)
    assert after < before or after == 0
    assert after == 0
    # the no-feedback ablation still ranks as before
    assert _rank(memory, query, target, pipeline="hybrid-no-feedback") == before


def test_wrong_pushes_a_memory_down_for_that_query(memory: Memory, seeded: list[str]) -> None:
    query = "What did Maya adopt?"
    top = memory.search(query, user_id="alice", k=1)[0].id
    memory.feedback(query, wrong=[top], used=[seeded[5]], user_id="alice")
    assert _rank(memory, query, top) > 0


def test_feedback_survives_reopening(tmp_path: Path, embedder: Embedder) -> None:
    with Memory(home=tmp_path, embedder=embedder) as mem:
        ids = [i.id for i in mem.add(FACTS, user_id="alice")]
        weights = mem.feedback("cello?", cited=[ids[5]], user_id="alice").weights
    with Memory(home=tmp_path, embedder=embedder) as mem:
        cube = mem.cube(memory_scope("alice"))
        log = mem.store.feedback(cube.id)
        assert log.weights == weights and log.events_trained == 1
        assert len(log) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "at least one"),
        ({"cited": "m_1"}, "must be a list"),
        ({"cited": 5}, "must be a list"),
        ({"cited": [""]}, "memory id"),
        ({"cited": [None]}, "memory id"),
    ],
)
def test_bad_feedback_is_rejected(
    memory: Memory, seeded: list[str], kwargs: dict, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        memory.feedback("q", user_id="alice", **kwargs)


def test_same_id_in_two_lists_is_rejected(memory: Memory, seeded: list[str]) -> None:
    with pytest.raises(ValidationError, match="both cited and wrong"):
        memory.feedback("q", cited=[seeded[0]], wrong=[seeded[0]], user_id="alice")


def test_bad_query_and_missing_owner(memory: Memory, seeded: list[str]) -> None:
    with pytest.raises(ValidationError):
        memory.feedback("", cited=[seeded[0]], user_id="alice")
    with pytest.raises(ValidationError, match="user_id or agent_id"):
        memory.feedback("q", cited=[seeded[0]])


def test_unknown_or_foreign_ids_record_nothing(memory: Memory, seeded: list[str]) -> None:
    bob = memory.add("Bob's secret note", user_id="bob")[0].id
    with pytest.raises(NotFoundError):
        memory.feedback("q", cited=[seeded[0], bob], user_id="alice")
    with pytest.raises(NotFoundError):
        memory.feedback("q", cited=[seeded[0], "m_does_not_exist"], user_id="alice")
    with pytest.raises(NotFoundError):
        memory.feedback("q", cited=[seeded[0]], user_id="carol")  # no cube at all
    cube = memory.cube(memory_scope("alice"))
    assert len(memory.store.feedback(cube.id)) == 0


def test_agent_scope_is_checked(memory: Memory) -> None:
    mine = memory.add("agent one's note", user_id="alice", agent_id="one")[0].id
    with pytest.raises(NotFoundError):
        memory.feedback("q", cited=[mine], user_id="alice", agent_id="two")
    assert memory.feedback("q", cited=[mine], user_id="alice", agent_id="one").recorded == 1


def test_hard_delete_erases_feedback_and_its_query_text(
    memory: Memory, seeded: list[str], tmp_path: Path
) -> None:
    memory.feedback("zebra-marker question", cited=[seeded[0]], user_id="alice")
    memory.feedback("other question", cited=[seeded[1]], user_id="alice")
    memory.delete(seeded[0], user_id="alice", hard=True)
    cube = memory.cube(memory_scope("alice"))
    log = memory.store.feedback(cube.id)
    assert log.queries == ["other question"] and len(log) == 1
    with sqlite3.connect(db_path(tmp_path)) as conn:
        texts = [r[0] for r in conn.execute("SELECT query FROM feedback_queries")]
    assert "zebra-marker question" not in texts


def test_delete_all_erases_feedback_and_reranker(
    memory: Memory, seeded: list[str], tmp_path: Path
) -> None:
    memory.feedback("a question", cited=[seeded[0]], user_id="alice")
    memory.delete_all(user_id="alice", hard=True)
    with sqlite3.connect(db_path(tmp_path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM feedback_queries").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM rerankers").fetchone()[0] == 0


def test_archived_memory_feedback_is_kept_but_not_scored(memory: Memory, seeded: list[str]) -> None:
    memory.feedback("cello?", cited=[seeded[5]], user_id="alice")
    memory.delete(seeded[5], user_id="alice")  # archive
    assert seeded[5] not in [h.id for h in memory.search("cello?", user_id="alice")]
    memory.restore(seeded[5], user_id="alice")
    assert memory.search("cello?", user_id="alice", k=1)[0].id == seeded[5]


class TestOnlineReranker:
    def test_moves_weight_to_the_feature_that_separates(self) -> None:
        features = np.zeros((5, len(FEATURES)))
        features[0, FEATURES.index("lexical")] = 3.0  # only the cited row has it
        features[1, FEATURES.index("cited")] = 2.0  # an uncited row has a high count
        base = np.array([0.0, 1.0, 0.5, 0.2, 0.1])
        step = OnlineReranker(learning_rate=0.1)
        new = step.update(None, base, features, np.array([0]), np.array([], dtype=np.int64))
        assert new["lexical"] > DEFAULT_WEIGHTS["lexical"]
        assert new["cited"] < DEFAULT_WEIGHTS["cited"]
        assert new["similar"] == DEFAULT_WEIGHTS["similar"]

    def test_weights_stay_non_negative(self) -> None:
        features = np.zeros((3, len(FEATURES)))
        features[1, FEATURES.index("lexical")] = 50.0
        weights = {name: 0.0 for name in FEATURES}
        step = OnlineReranker(learning_rate=1.0)
        new = step.update(weights, np.zeros(3), features, np.array([0]), np.array([1]))
        assert min(new.values()) >= 0.0

    def test_no_positive_means_no_change(self) -> None:
        features = np.ones((3, len(FEATURES)))
        new = OnlineReranker().update(
            None, np.zeros(3), features, np.array([], dtype=np.int64), np.array([1])
        )
        assert new == DEFAULT_WEIGHTS
