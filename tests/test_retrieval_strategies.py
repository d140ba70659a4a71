"""Every retrieval strategy on tiny real fixtures: signals, context wrappers, the hybrid
recipe and its ablations, query date parsing, the per-cube lexicon, the LoCoMo bench."""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from engram import Memory
from engram.bench.locomo import SystemScores, hit_turns, ranked_turns
from engram.bench.locomo import run as run_locomo
from engram.scope import Scope, build_filter
from engram.store.vector_index import CubeSnapshot, SnapshotRow, build_snapshot
from engram.text.retrieval import PIPELINES, build_pipeline
from engram.text.retrieval.base import QueryContext
from engram.text.retrieval.context import SessionSignal, WindowSignal
from engram.text.retrieval.hybrid import HYBRID_PARTS
from engram.text.retrieval.lexicon import (
    Lexicon,
    query_tokens,
    session_documents,
    stem,
    window_documents,
)
from engram.text.retrieval.scorer import Scorer, WeightedSum, zscore
from engram.text.retrieval.signals import LexicalSignal, SpeakerSignal, TimeSignal
from engram.text.timeexpr import days, time_ranges

SAMPLE = Path(str(resources.files("engram") / "data" / "sample_conversation.json"))


def snapshot(rows: list[tuple[str | None, str | None, str]], dim: int = 4) -> CubeSnapshot:
    """(session, speaker, text) rows with distinct unit vectors."""
    eye = np.eye(max(dim, len(rows)), dtype=np.float32)
    return build_snapshot(
        1,
        [
            SnapshotRow(i + 1, eye[i][:dim] if i < dim else eye[0][:dim], s, sp, 19000.0 + i, t)
            for i, (s, sp, t) in enumerate(rows)
        ],
        dim,
    )


class Fixed(Scorer):
    """A real scorer returning a fixed array (for testing wrappers)."""

    def __init__(self, values: list[float]):
        self.values = np.asarray(values, dtype=np.float64)

    def score(self, ctx: QueryContext) -> np.ndarray:
        return self.values


def ctx_for(snap: CubeSnapshot, query: str = "q") -> QueryContext:
    ctx = QueryContext(None, 1, query, build_filter(Scope.of(user_id="x")), lambda q: np.zeros(4))  # type: ignore[arg-type]
    ctx._snapshot = snap
    return ctx


THREE_TWO = [
    ("s1", "ann", "a"),
    ("s1", "bob", "b"),
    ("s1", "ann", "c"),
    ("s2", "bob", "d"),
    ("s2", "ann", "e"),
]


def test_time_ranges_formats() -> None:
    assert time_ranges("on 9 November, 2022") == [(date(2022, 11, 9), date(2022, 11, 9))]
    assert time_ranges("on July 24, 2023") == [(date(2023, 7, 24), date(2023, 7, 24))]
    assert time_ranges("Sept 3rd, 2021") == [(date(2021, 9, 3), date(2021, 9, 3))]
    assert time_ranges("in May 2023") == [(date(2023, 5, 1), date(2023, 5, 31))]
    assert time_ranges("in 2021") == [(date(2021, 1, 1), date(2021, 12, 31))]
    assert time_ranges("31 February, 2022") == []
    assert time_ranges("February 31, 2022") == []
    assert time_ranges("room 2012, 2000 steps, the year 3021") == []


def test_window_and_session_documents_stay_inside_sessions() -> None:
    snap = snapshot(THREE_TWO)
    lex = Lexicon.of(snap)
    a, b, c, d, e = (lex.vocab[t] for t in "abcde")
    win = window_documents(snap, 1, 1).counts.toarray()
    assert win[0][[a, b, c]].tolist() == [1, 1, 0]
    assert win[2][[b, c, d]].tolist() == [1, 1, 0]  # the next turn is in another session
    assert win[3][[d, e]].tolist() == [1, 1]
    sess = session_documents(snap).counts.toarray()
    assert sess.shape[0] == 2  # one document per session
    assert sess[0][[a, b, c, d]].tolist() == [1, 1, 1, 0]
    assert window_documents(snap, 1, 1) is window_documents(snap, 1, 1)  # cached


def test_neighbours_follow_sessions_that_interleave() -> None:
    snap = snapshot(
        [
            ("A", None, "a1"),
            ("B", None, "b1"),
            ("A", None, "a2"),
            ("B", None, "b2"),
            (None, None, "x"),
        ]
    )
    prev, nxt = snap.neighbours
    assert prev.tolist() == [-1, -1, 0, 1, -1]
    assert nxt.tolist() == [2, 3, -1, -1, -1]


def test_stemming_is_thread_safe() -> None:
    import threading

    words = [f"running{i}s" for i in range(3000)] + ["allergies", "researching"] * 500
    expected = {w: stem.__wrapped__(w) for w in set(words)}
    stem.cache_clear()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for w in words:
                assert stem(w) == expected[w]
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_window_signal_means_over_neighbours() -> None:
    snap = snapshot(THREE_TWO)
    ctx = ctx_for(snap)
    out = WindowSignal(Fixed([3, 0, 0, 6, 0]), radius=1).score(ctx)
    assert out.tolist() == pytest.approx([1.5, 1.0, 0.0, 3.0, 3.0])


@pytest.mark.parametrize(
    "reduce, expected", [("max", [5, 5, 5, 2, 2]), ("mean", [3, 3, 3, 1.5, 1.5])]
)
def test_session_signal(reduce: str, expected: list[float]) -> None:
    ctx = ctx_for(snapshot(THREE_TWO))
    assert SessionSignal(Fixed([1, 3, 5, 1, 2]), reduce).score(ctx).tolist() == expected


def test_weighted_sum_standardises_except_calibrated() -> None:
    ctx = ctx_for(snapshot(THREE_TWO))

    class Calibrated(Fixed):
        calibrated = True

    a, c = Fixed([1, 2, 3, 4, 5]), Calibrated([0, 0, 1, 0, 0])
    total = WeightedSum(((a, 2.0), (c, 3.0))).score(ctx)
    assert total == pytest.approx(2 * zscore(a.values) + 3 * c.values)


def test_weighted_sum_rescales_only_standardised_parts_for_missing_rows() -> None:
    ctx = ctx_for(snapshot(THREE_TWO))

    class Calibrated(Fixed):
        calibrated = True

    a = Fixed([1, 2, 3, 4, 5])
    partial = Fixed([1, 2, np.nan, 4, 5])
    c = Calibrated([1, 1, 1, 1, 1])
    total = WeightedSum(((a, 1.0), (partial, 1.0), (c, 4.0))).score(ctx)
    za = zscore(a.values)
    assert total[2] == pytest.approx(2 * za[2] + 4.0)  # a's weight doubled, c untouched
    assert total[0] == pytest.approx(za[0] + zscore(partial.values)[0] + 4.0)


def test_lexical_signal_units_and_per_cube_statistics() -> None:
    snap = snapshot(
        [
            ("s1", "ann", "Did you adopt the greyhound?"),
            ("s1", "bob", "Yes, her name is Biscuit"),
            ("s2", "ann", "The weather was lovely"),
        ]
    )
    ctx = ctx_for(snap, "greyhound name")
    turn = LexicalSignal("turn").score(ctx)
    window = LexicalSignal("window", before=1, after=0).score(ctx)
    assert turn[0] > 0 and turn[2] == 0
    assert window[1] > turn[1]  # the answer inherits its question's words
    assert LexicalSignal("session").score(ctx)[2] == 0
    assert query_tokens("What is the dog's name?") == ["dog", "name"]
    lex = Lexicon.of(snap)
    assert lex is Lexicon.of(snap) and lex.rows.counts.shape[0] == 3


def test_lexical_scores_do_not_depend_on_other_owners(embedder) -> None:
    texts = ["I adopted a greyhound", "We went hiking", "Biscuit loves the sofa"]
    with Memory(home=Path(__import__("tempfile").mkdtemp()), embedder=embedder) as m:
        m.add(texts, user_id="alice")
        before = m.search("greyhound hiking", user_id="alice", k=3)
        m.add(["greyhound " * 5] * 20, user_id="bob")  # floods the global term statistics
        after = m.search("greyhound hiking", user_id="alice", k=3)
    assert [h.id for h in before] == [h.id for h in after]
    assert [round(h.score, 9) for h in before] == [round(h.score, 9) for h in after]


def test_time_signal() -> None:
    snap = snapshot(THREE_TWO)
    ctx = ctx_for(snap, "what happened on 3 January, 2022")
    target = days(date(2022, 1, 3))
    snap.times[:] = [target - 30, target, target + 5, target + 40, target + 11 + 10]
    out = TimeSignal(after_days=10, tau_days=10).score(ctx)
    assert out[1] == 1.0 and out[2] == 1.0
    assert out[0] == pytest.approx(np.exp(-3.0))
    assert out[4] == pytest.approx(np.exp(-1.0), rel=1e-6)
    assert TimeSignal().score(ctx_for(snap, "no dates here")).tolist() == [0.0] * 5


def test_speaker_signal() -> None:
    ctx = ctx_for(snapshot(THREE_TWO), "What did Ann say about it?")
    assert SpeakerSignal().score(ctx).tolist() == [1, 0, 1, 0, 1]
    assert SpeakerSignal().score(ctx_for(snapshot(THREE_TWO), "what happened")).sum() == 0


def test_every_pipeline_runs_and_respects_filters(memory: Memory) -> None:
    memory.add(
        ["I keep bees in the garden", "The honey harvest was great"],
        user_id="a",
        session_id="s1",
        timestamp="2023-05-01T10:00:00",
    )
    fact = memory.add("Bees need water in summer", user_id="a", memory_type="fact")[0]
    archived = memory.add("bees bees bees", user_id="a")[0]
    memory.delete(archived.id)
    for name in PIPELINES:
        hits = memory.search("bees", user_id="a", k=5, pipeline=name)
        assert hits and archived.id not in {h.id for h in hits}, name
        only_facts = memory.search("bees", user_id="a", k=5, pipeline=name, types="fact")
        assert [h.id for h in only_facts] == [fact.id], name
        in_s1 = memory.search("bees", user_id="a", k=5, pipeline=name, session_id="s1")
        assert {h.provenance.session_id for h in in_s1} == {"s1"}, name


def test_ablation_pipelines_drop_exactly_one_part() -> None:
    full = build_pipeline("hybrid").scorer.parts  # type: ignore[attr-defined]
    assert len(full) == len(HYBRID_PARTS)
    for part in HYBRID_PARTS:
        parts = build_pipeline(f"hybrid-no-{part}").scorer.parts  # type: ignore[attr-defined]
        assert len(parts) == len(full) - 1
        assert HYBRID_PARTS[part] not in parts


def test_recall_metrics_and_hit_expansion(memory: Memory) -> None:
    scores = SystemScores([1, 2])
    scores.add(["D1", "D2", "D3"], ["D2", "D9"], 4, 1.0)
    summary = scores.summary(100.0)
    assert summary["recall"] == {"1": 0.0, "2": 50.0}
    assert summary["mrr"] == 0.5
    item = memory.add(
        {"content": "a summary", "source_id": "S1"},
        user_id="a",
        metadata={"source_ids": ["D1:1", "D1:2"]},
    )[0]
    hit = memory.search("summary", user_id="a", k=1)[0]
    assert hit.id == item.id and hit_turns(hit) == ["D1:1", "D1:2"]
    assert ranked_turns([hit, hit], 1) == ["D1:1"]


def test_locomo_bench_on_the_sample(tmp_path: Path) -> None:
    result = run_locomo(SAMPLE, [1, 5, 10], ablations=["hybrid-no-time"])
    assert result["questions"] == 10
    assert set(result["systems"]) == {"default", "bm25", "dense"}
    assert set(result["ablation"]) == {"hybrid-no-time"}
    default = result["systems"]["default"]
    assert 0 < default["recall"]["1"] <= default["recall"]["5"] <= default["recall"]["10"] <= 100
    assert default["recall"]["10"] >= result["systems"]["dense"]["recall"]["10"]
    assert set(default["by_category"]) <= {"1", "2", "3", "4", "5"}
    json.dumps(result)  # serialisable as printed by --json


def test_lexicon_follows_inserts_and_removals_like_a_rebuild(memory: Memory) -> None:
    """After adds and deletes the carried-over lexicon scores exactly like a fresh build."""
    memory.add(["the greyhound sleeps", "we hiked the alps"], user_id="a", session_id="s1")
    memory.search("greyhound", user_id="a")  # builds the lexicon of this snapshot
    added = memory.add(["a new greyhound toy", "zebra crossing"], user_id="a", session_id="s2")
    memory.delete(added[1].id)
    cube = memory.cube(Scope.of(user_id="a"))
    snap = memory.store.snapshot(cube.id)
    carried = snap.derived.get("lexicon")
    assert carried is not None  # moved forward, not dropped
    fresh = Lexicon.build(snap.texts)
    for query in ("greyhound toy", "alps", "zebra"):
        terms = query_tokens(query)
        assert carried.bm25(terms, carried.rows) == pytest.approx(fresh.bm25(terms, fresh.rows))


def test_answer_type_signal() -> None:
    from engram.text.retrieval.signals import AnswerTypeSignal

    snap = snapshot(
        [
            ("s1", "a", "We met last week at the park"),
            ("s1", "b", "I have 3 cats"),
            ("s1", "a", "The park is lovely"),
        ]
    )
    assert AnswerTypeSignal().score(ctx_for(snap, "When did they meet?")).tolist() == [1, 0, 0]
    assert AnswerTypeSignal().score(ctx_for(snap, "How many cats?")).tolist() == [0, 1, 0]
    assert AnswerTypeSignal().score(ctx_for(snap, "Where is the park?")).tolist() == [0, 0, 0]
