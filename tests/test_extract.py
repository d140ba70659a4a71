"""Offline extractors on the sample conversation: session and topic summaries, dated
events, near-duplicate merging; provenance, versions and all-or-nothing plans."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from engram import Memory
from engram.embed import Embedder
from engram.errors import StoreError
from engram.extract.timeref import resolve
from engram.importers import locomo_requests
from engram.importers.locomo import read_locomo
from engram.types import MemoryState, VersionEvent

SAMPLE = Path(__file__).resolve().parent.parent / "src/engram/data/sample_conversation.json"
CONV = read_locomo(SAMPLE)[0]
OWNER = CONV.sample_id


def _memory(home: Path, embedder: Embedder, **extract: object) -> Memory:
    return Memory(home=home, embedder=embedder, extract=extract)


@pytest.fixture
def loaded(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    """The sample conversation added (jobs queued, not yet run)."""
    with _memory(tmp_path, embedder) as m:
        m.add_batch(locomo_requests(CONV))
        yield m


def _derived(m: Memory, mtype: str, **kw: object) -> list:
    return m.get_all(user_id=OWNER, types=[mtype], limit=1000, **kw).items


# -- relative dates -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, start, end",
    [
        ("I went to the support group yesterday.", date(2023, 5, 7), date(2023, 5, 7)),
        ("the day before yesterday", date(2023, 5, 6), date(2023, 5, 6)),
        ("two weeks ago I ran 10k", date(2023, 4, 24), date(2023, 4, 24)),
        ("3 days ago", date(2023, 5, 5), date(2023, 5, 5)),
        ("We met last Friday", date(2023, 5, 5), date(2023, 5, 5)),
        ("see you next Monday", date(2023, 5, 15), date(2023, 5, 15)),
        ("last week was busy", date(2023, 5, 1), date(2023, 5, 7)),
        ("next month", date(2023, 6, 1), date(2023, 6, 30)),
        ("last year I moved", date(2022, 1, 1), date(2022, 12, 31)),
        ("last weekend was fun", date(2023, 5, 6), date(2023, 5, 7)),
        ("in 2 months", date(2023, 7, 1), date(2023, 7, 31)),
        ("I bought it on 9 May, 2023", date(2023, 5, 9), date(2023, 5, 9)),
    ],
)
def test_relative_expressions_resolve_against_the_day_they_were_said(
    text: str, start: date, end: date
) -> None:
    refs = resolve(text, date(2023, 5, 8))  # a Monday
    assert [(r.start, r.end) for r in refs] == [(start, end)]


def test_text_without_time_expressions_has_no_dates() -> None:
    assert resolve("I like tomatoes and the river view", date(2023, 5, 8)) == []
    approx = resolve("a few years ago", date(2023, 5, 8))[0]
    assert approx.approximate and "approximately" in approx.describe()


# -- session summaries ----------------------------------------------------------------


def test_session_summaries_quote_their_source_turns(loaded: Memory) -> None:
    ran = loaded.run_jobs()
    assert ran and all(j.state.value == "done" for j in ran), [(j.extractor, j.error) for j in ran]
    summaries = [s for s in _derived(loaded, "summary") if s.metadata["granularity"] == "session"]
    assert sorted(s.provenance.session_id for s in summaries) == [
        "session_1",
        "session_2",
        "session_3",
    ]
    turns = {t.provenance.source_id: t for t in _derived(loaded, "turn")}
    for summary in summaries:
        sources = summary.metadata["source_ids"]
        assert 1 <= len(sources) <= 3
        session = summary.provenance.session_id
        for sid in sources:
            turn = turns[sid]
            assert turn.provenance.session_id == session
            assert turn.memory[:60] in summary.memory  # extractive: the turn is quoted
        assert summary.metadata["source_memory_ids"] == [turns[s].id for s in sources]
        assert summary.provenance.source == "extract:offline"
        assert summary.metadata["extractor"] == "session-summary"
        assert summary.metadata["session_turns"] >= 12
    first = next(s for s in summaries if s.provenance.session_id == "session_1")
    assert "8 May 2023" in first.memory and "Maya" in first.memory
    # searchable at once, like any memory
    hits = loaded.search("what happened in the first session", user_id=OWNER, types=["summary"])
    assert hits and hits[0].type == "summary"


def test_a_grown_session_gets_a_new_summary_version(loaded: Memory) -> None:
    loaded.run_jobs()
    before = {s.provenance.session_id: s for s in _derived(loaded, "summary")}
    old = before["session_1"]
    loaded.add(
        [
            {
                "content": "Lisbon neighbourhood Alfama balcony tomatoes lease river flat",
                "name": "Maya",
            },
            {
                "content": "The Alfama flat with the balcony and the lease sounds great",
                "name": "Tomas",
            },
        ],
        user_id=OWNER,
        session_id="session_1",
        timestamp="2023-05-08T14:30:00",
    )
    ran = {j.extractor: j for j in loaded.run_jobs()}
    new = loaded.get(old.id)
    history = loaded.history(old.id)
    if new.memory != old.memory:  # the picked turns changed: a new version, the old kept
        assert ran["session-summary"].result["updated"] == 1
        assert new.metadata["session_turns"] == old.metadata["session_turns"] + 2
        assert [v.event for v in history] == [VersionEvent.ADD, VersionEvent.UPDATE]
        assert history[0].memory == old.memory
        assert history[1].source == "extract:offline" and history[1].reason
    else:  # same quotes: no version noise
        assert ran["session-summary"].result["unchanged"] == 1
        assert len(history) == 1
    sessions = [s for s in _derived(loaded, "summary") if s.metadata["granularity"] == "session"]
    assert len(sessions) == len(before)  # updated, not duplicated


def test_short_sessions_get_no_summary(tmp_path: Path, embedder: Embedder) -> None:
    with _memory(tmp_path, embedder, session_min_turns=20) as m:
        m.add_batch(locomo_requests(CONV))
        ran = {j.extractor: j for j in m.run_jobs()}
        assert "fewer than 20" in ran["session-summary"].result["note"]
        assert _derived(m, "summary") == []


# -- topic summaries ------------------------------------------------------------------


def test_topic_summaries_cluster_the_owner_and_wait_for_growth(
    tmp_path: Path, embedder: Embedder
) -> None:
    with _memory(tmp_path, embedder, topic_min_turns=10, topic_size=10) as m:
        m.add_batch(locomo_requests(CONV))
        m.run_jobs()
        topics = [s for s in _derived(m, "summary") if s.metadata["granularity"] == "topic"]
        assert len(topics) >= 2
        turn_ids = {t.provenance.source_id for t in _derived(m, "turn")}
        for topic in topics:
            assert topic.memory.startswith("Topic: ")
            assert topic.metadata["keywords"] and topic.metadata["cube_turns"] == 39
            assert set(topic.metadata["source_ids"]) <= turn_ids
            assert all(kw in topic.memory for kw in topic.metadata["keywords"])
        assert sum(t.metadata["topic_turns"] for t in topics) <= 39
        # one more turn is less than a quarter more: topics stay as they are
        m.add("One more thing about the marathon", user_id=OWNER, session_id="session_3")
        ran = {j.extractor: j for j in m.run_jobs()}
        assert "topics were built over 39" in ran["topic-summary"].result["note"]


# -- dated events ---------------------------------------------------------------------


def test_relative_dates_become_dated_events(loaded: Memory) -> None:
    loaded.run_jobs()
    events = _derived(loaded, "event")
    dog = next(e for e in events if "greyhound" in e.memory)
    assert dog.metadata["source_ids"] == ["D2:5"]
    assert dog.metadata["expression"] == "last week"
    # said on Saturday 3 June 2023: last week is Monday 22 to Sunday 28 May
    assert (dog.metadata["date"], dog.metadata["date_end"]) == ("2023-05-22", "2023-05-28")
    assert dog.memory.startswith("Between 22 May 2023 and 28 May 2023, Tomas: ")
    assert dog.provenance.timestamp is not None and dog.provenance.timestamp.date() == date(
        2023, 5, 22
    )
    assert dog.provenance.session_id == "session_2"
    hits = loaded.search("when did Tomas adopt the dog", user_id=OWNER, k=3)
    assert dog.id in [h.id for h in hits]


# -- near-duplicate merging -----------------------------------------------------------


def test_near_duplicates_merge_without_losing_text(tmp_path: Path, embedder: Embedder) -> None:
    with _memory(tmp_path, embedder, extractors=["dedup"], dedup_threshold=0.9) as m:
        a = m.add(
            "Maya lives in Lisbon.",
            user_id="u",
            memory_type="fact",
            metadata={"source_ids": ["D1"]},
        )[0]
        b = m.add(
            "Maya lives in Lisbon", user_id="u", memory_type="fact", metadata={"source_ids": ["D7"]}
        )[0]
        c = m.add("Tomas runs half marathons.", user_id="u", memory_type="fact")[0]
        m.add("hello there", user_id="u")  # a turn: queues the cube's dedup job
        (job,) = m.run_jobs()
        assert job.state.value == "done" and job.result == {
            "added": 0,
            "updated": 1,
            "archived": 1,
            "unchanged": 0,
            "seconds": job.result["seconds"],
        }
        rep, dup = m.get(a.id), m.get(b.id)
        assert rep.state is MemoryState.ACTIVE and dup.state is MemoryState.ARCHIVED
        assert dup.memory == "Maya lives in Lisbon"  # the text is kept
        assert rep.metadata["merged_ids"] == [b.id]
        assert rep.metadata["source_ids"] == ["D1", "D7"]
        assert m.get(c.id).state is MemoryState.ACTIVE
        rep_history, dup_history = m.history(a.id), m.history(b.id)
        assert rep_history[-1].event is VersionEvent.MERGE
        assert b.id in rep_history[-1].reason and rep_history[-1].source == "extract:offline"
        assert dup_history[-1].event is VersionEvent.MERGE
        assert a.id in dup_history[-1].reason and dup_history[-1].source == "extract:offline"
        m.restore(b.id)  # reversible
        assert m.get(b.id).state is MemoryState.ACTIVE


# -- all or nothing -------------------------------------------------------------------


def test_a_plan_that_fails_midway_writes_nothing(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _memory(tmp_path, embedder, extractors=["session-summary", "dates"]) as m:
        m.add_batch(locomo_requests(CONV))
        count = len(_derived(m, "turn"))

        def broken(*args: object, **kwargs: object) -> None:
            raise StoreError("disk full (simulated)")

        # the dates job of session 2 inserts an event, then the next write fails
        real_insert = m.store.insert

        def insert_then_fail(cube, rows, vectors):  # type: ignore[no-untyped-def]
            real_insert(cube, rows, vectors)
            broken()

        monkeypatch.setattr(m.store, "insert", insert_then_fail)
        ran = m.run_jobs()
        failed = [j for j in ran if j.error]
        assert failed and all(j.state.value == "queued" for j in failed)
        assert all("disk full" in j.error for j in failed)
        page = m.get_all(user_id=OWNER, limit=1000, include_archived=True).items
        assert len(page) == count  # nothing derived survived the rolled-back transactions
        monkeypatch.undo()
        # the in-process vector index forgot the rolled-back rows too
        hits = m.search("greyhound adopted last week", user_id=OWNER, k=20)
        assert hits and all(h.type == "turn" for h in hits)
