"""Rerankers: every registered one learns from feedback on a tiny cube, the registry refuses
unknown names, and feedback trains the reranker of the pipeline the owner's searches use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from engram import Memory
from engram.embed import Embedder
from engram.errors import ConfigError
from engram.scope import Scope
from engram.store.base import MemoryFilter
from engram.text.reranker import (
    RERANKERS,
    FixedReranker,
    OnlineReranker,
    Reranker,
    build_reranker,
    register_reranker,
)
from engram.text.retrieval import PIPELINES, QueryContext, build_pipeline
from engram.text.retrieval.feedback import DEFAULT_WEIGHTS, FEATURES, FeedbackSignal
from engram.text.retrieval.hybrid import base_scorer
from engram.text.retrieval.scorer import ScoringRetriever, WeightedSum
from engram.text.retrieval.signals import DenseSignal

FACTS = [
    "Maya adopted a grey cat from the shelter on Elm street.",
    "Tomas fixed the old bicycle with a new chain.",
    "Maya's sister moved to Lisbon for a design job.",
    "The team dinner was moved to Friday at the harbour restaurant.",
    "Tomas keeps his climbing gear in the garage.",
    "Maya started learning the cello last winter.",
]
CELLO = 5
ASKED = "What instrument is Maya practising?"
SIMILAR = "Which instrument has she been practising?"
# pipelines whose score has a `feedback` part: the reranker learns on top of the rest
LEARNABLE = {"hybrid", "adaptive"} | {
    name for name in PIPELINES if name.startswith("hybrid-no-") and name != "hybrid-no-feedback"
}


@dataclass(frozen=True)
class SpyReranker(Reranker):
    """Keeps what each step was given; moves no weight."""

    calls: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, compare=False)
    name: str = "spy"

    def update(
        self,
        weights: dict[str, float] | None,
        base: np.ndarray,
        features: np.ndarray,
        positive: np.ndarray,
        wrong: np.ndarray,
    ) -> dict[str, float]:
        self.calls.append((base.copy(), features.copy()))
        return FixedReranker().update(weights, base, features, positive, wrong)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SpyReranker:
    made = SpyReranker()
    monkeypatch.setitem(RERANKERS, "spy", lambda: made)
    return made


def _open(tmp_path: Path, embedder: Embedder, **search: str) -> tuple[Memory, list[str]]:
    mem = Memory(home=tmp_path, embedder=embedder, search=search)
    items = mem.add(
        [{"role": "user", "content": text} for text in FACTS], user_id="alice", session_id="s1"
    )
    return mem, [item.id for item in items]


@pytest.fixture
def opened(tmp_path: Path, embedder: Embedder) -> Iterator[list[Memory]]:
    """Memories opened by a test, closed after it."""
    mems: list[Memory] = []
    yield mems
    for mem in mems:
        mem.close()


def _rank(mem: Memory, query: str, memory_id: str, pipeline: str | None = None) -> int:
    hits = mem.search(query, user_id="alice", k=len(FACTS), pipeline=pipeline)
    return [h.id for h in hits].index(memory_id)


def _context(mem: Memory, query: str) -> QueryContext:
    cube = mem.cube(Scope.of(user_id="alice"))
    assert cube is not None
    return QueryContext(mem.store, cube.id, query, MemoryFilter(), mem.embedder.embed_one)


def _row(mem: Memory, ctx: QueryContext, memory_id: str) -> int:
    found = mem.store.locate(memory_id)
    assert found is not None
    return int(np.searchsorted(ctx.snapshot.keys, found.key))


# -- the registry ---------------------------------------------------------------------


def test_builtin_rerankers_are_registered() -> None:
    assert {"online", "fixed"} <= set(RERANKERS)
    assert isinstance(build_reranker("online"), OnlineReranker)
    assert isinstance(build_reranker("fixed"), FixedReranker)


@pytest.mark.parametrize("name", ["nope", "", "Online", " online"])
def test_registry_refuses_unknown_names(name: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown search.reranker .*known: .*fixed, .*online"):
        build_reranker(name)


def test_memory_refuses_an_unknown_configured_reranker(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(ConfigError, match="unknown search.reranker 'nope'"):
        Memory(home=tmp_path, embedder=embedder, search={"reranker": "nope"})


def test_env_selects_the_reranker(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, spy: SpyReranker
) -> None:
    monkeypatch.setenv("ENGRAM_SEARCH__RERANKER", "spy")
    with Memory(home=tmp_path, embedder=embedder) as mem:
        assert mem.config.search.reranker == "spy"
        ids = [i.id for i in mem.add(FACTS, user_id="alice")]
        mem.feedback(ASKED, cited=[ids[CELLO]], user_id="alice")
    assert len(spy.calls) == 1


def test_register_reranker_makes_a_name_selectable(monkeypatch: pytest.MonkeyPatch) -> None:
    made = SpyReranker()
    monkeypatch.setitem(RERANKERS, "mine", lambda: made)  # the name is removed after the test
    register_reranker("mine", lambda: made)
    assert build_reranker("mine") is made


# -- every registered reranker learns -------------------------------------------------


@pytest.mark.parametrize("name", sorted(RERANKERS))
def test_update_keeps_every_feature_non_negative(name: str) -> None:
    features = np.zeros((4, len(FEATURES)))
    features[0, FEATURES.index("lexical")] = 3.0
    features[1, FEATURES.index("cited")] = 2.0
    new = build_reranker(name).update(
        None, np.array([0.0, 1.0, 0.5, 0.2]), features, np.array([0]), np.array([1])
    )
    assert set(new) == set(FEATURES)
    assert min(new.values()) >= 0.0


@pytest.mark.parametrize("name", sorted(RERANKERS))
def test_cited_rises_and_wrong_falls(
    name: str, tmp_path: Path, embedder: Embedder, opened: list[Memory]
) -> None:
    """The memory ranked last for a question is cited for a similar one three times: it
    rises (from last to first or second); a memory marked wrong for a question leaves the top."""
    mem, ids = _open(tmp_path, embedder, reranker=name)
    opened.append(mem)
    target = mem.search(SIMILAR, user_id="alice", k=len(FACTS))[-1].id
    before = _rank(mem, SIMILAR, target)
    assert before == len(FACTS) - 1
    for _ in range(3):
        result = mem.feedback(ASKED, cited=[target], user_id="alice")
        assert result.recorded == 1 and min(result.weights.values()) >= 0.0
    assert _rank(mem, SIMILAR, target) <= 1
    query = "What did Maya adopt?"
    top = mem.search(query, user_id="alice", k=1)[0].id
    mem.feedback(query, wrong=[top], used=[ids[2]], user_id="alice")
    assert _rank(mem, query, top) > 0


def test_online_moves_weights_and_fixed_keeps_them(
    tmp_path: Path, embedder: Embedder, opened: list[Memory]
) -> None:
    online, ids = _open(tmp_path / "online", embedder, reranker="online")
    fixed, fixed_ids = _open(tmp_path / "fixed", embedder, reranker="fixed")
    opened += [online, fixed]
    for _ in range(2):
        moved = online.feedback(ASKED, cited=[ids[CELLO]], user_id="alice").weights
        kept = fixed.feedback(ASKED, cited=[fixed_ids[CELLO]], user_id="alice").weights
    assert moved != DEFAULT_WEIGHTS
    assert kept == DEFAULT_WEIGHTS
    cube = fixed.cube(Scope.of(user_id="alice"))
    assert cube is not None
    assert fixed.store.feedback(cube.id).events_trained == 2  # steps taken, weights kept


# -- feedback trains the configured pipeline's reranker --------------------------------


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_which_pipelines_have_a_learnable_reranker(name: str) -> None:
    learned = build_pipeline(name).feedback_base()
    assert (learned is not None) == (name in LEARNABLE)
    if learned is not None:
        base, weight = learned
        assert weight == 1.0
        assert isinstance(base, WeightedSum)
        assert not any(s.learns_from_feedback for s, _ in base.parts)


def test_default_pipeline_trains_on_the_hybrid_score(
    tmp_path: Path, embedder: Embedder, opened: list[Memory], spy: SpyReranker
) -> None:
    mem, ids = _open(tmp_path, embedder, reranker="spy")
    opened.append(mem)
    mem.feedback(ASKED, cited=[ids[CELLO]], user_id="alice")
    ((base, _),) = spy.calls
    assert np.array_equal(base, base_scorer()(_context(mem, ASKED)))


@pytest.mark.parametrize("pipeline", ["hybrid-no-window-bm25", "hybrid-no-time"])
def test_a_configured_pipeline_trains_its_own_reranker(
    pipeline: str, tmp_path: Path, embedder: Embedder, opened: list[Memory], spy: SpyReranker
) -> None:
    """Deliberate change: feedback used to train against the hybrid score whatever
    `search.pipeline` said."""
    mem, ids = _open(tmp_path, embedder, pipeline=pipeline, reranker="spy")
    opened.append(mem)
    query = "What instrument did Maya start learning last winter?"
    mem.feedback(query, cited=[ids[CELLO]], user_id="alice")
    ((base, _),) = spy.calls
    learned = build_pipeline(pipeline).feedback_base()
    assert learned is not None
    ctx = _context(mem, query)
    assert np.array_equal(base, learned[0](ctx))
    if pipeline == "hybrid-no-window-bm25":  # (the time part may be zero everywhere)
        assert not np.array_equal(base, base_scorer()(ctx))


def test_online_step_matches_the_configured_pipeline(
    tmp_path: Path, embedder: Embedder, opened: list[Memory]
) -> None:
    pipeline = "hybrid-no-window-bm25"
    mem, ids = _open(tmp_path, embedder, pipeline=pipeline)
    opened.append(mem)
    ctx = _context(mem, ASKED)
    learned = build_pipeline(pipeline).feedback_base()
    assert learned is not None
    features = np.zeros((len(FACTS), len(FEATURES)))  # no feedback before the first report
    rows = np.array([_row(mem, ctx, ids[CELLO])])
    expected = OnlineReranker().update(
        None, learned[0](ctx), features, rows, np.zeros(0, dtype=np.int64)
    )
    assert mem.feedback(ASKED, cited=[ids[CELLO]], user_id="alice").weights == expected


def test_a_weighted_feedback_part_scales_the_features(
    tmp_path: Path,
    embedder: Embedder,
    opened: list[Memory],
    spy: SpyReranker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A custom pipeline (dense + feedback at weight 2) trains on dense, features doubled."""
    scorer = WeightedSum(((DenseSignal(), 1.0), (FeedbackSignal(), 2.0)))
    monkeypatch.setitem(PIPELINES, "dense-fb", lambda: ScoringRetriever(scorer, name="dense-fb"))
    mem, ids = _open(tmp_path, embedder, pipeline="dense-fb", reranker="spy")
    opened.append(mem)
    mem.feedback(ASKED, cited=[ids[CELLO]], user_id="alice")
    mem.feedback(SIMILAR, cited=[ids[CELLO]], user_id="alice")
    base, features = spy.calls[1]
    ctx = _context(mem, SIMILAR)
    assert np.array_equal(base, WeightedSum(((DenseSignal(), 1.0),))(ctx))
    row = _row(mem, ctx, ids[CELLO])
    assert features[row, FEATURES.index("cited")] == pytest.approx(2.0 * np.log(2.0))


@pytest.mark.parametrize("pipeline", ["bm25", "dense", "rrf", "zscore", "hybrid-no-feedback"])
def test_pipelines_without_feedback_part_record_only(
    pipeline: str, tmp_path: Path, embedder: Embedder, opened: list[Memory], spy: SpyReranker
) -> None:
    """Deliberate: no reranker step (hybrid-no-feedback used to train the hybrid's); the
    report is kept, so a pipeline with a feedback part uses it later."""
    mem, ids = _open(tmp_path, embedder, pipeline=pipeline, reranker="spy")
    opened.append(mem)
    before = [h.id for h in mem.search(SIMILAR, user_id="alice", k=len(FACTS))]
    result = mem.feedback(ASKED, cited=[ids[CELLO]], wrong=[ids[0]], user_id="alice")
    assert result.recorded == 2 and result.weights == DEFAULT_WEIGHTS
    assert spy.calls == []
    cube = mem.cube(Scope.of(user_id="alice"))
    assert cube is not None
    log = mem.store.feedback(cube.id)
    assert len(log) == 2 and log.weights is None and log.events_trained == 0
    assert [h.id for h in mem.search(SIMILAR, user_id="alice", k=len(FACTS))] == before
    mem.feedback(ASKED, cited=[ids[CELLO]], user_id="alice")
    mem.feedback(ASKED, cited=[ids[CELLO]], user_id="alice")
    assert _rank(mem, SIMILAR, ids[CELLO], pipeline="hybrid") == 0
