"""The Store contract: every test runs on the SQLite store and on the PostgreSQL store
(a real server, see conftest.py), through the protocol only."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from _store_backends import DIM, another

from _engram_helpers import new_row
from engram.errors import CubeGoneError, NotFoundError
from engram.store.base import Change, MemoryFilter, NewMemory, RetentionPlan, Store
from engram.store.feedback import FeedbackEvent, FeedbackLabel
from engram.store.jobs import JobState, NewJob
from engram.types import MemoryState, VersionEvent


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def rows(*texts: str, **fields: object) -> list[NewMemory]:
    return [replace(new_row(t), **fields) for t in texts]  # type: ignore[arg-type]


def add(store: Store, owner: str, *texts: str, **fields: object) -> tuple[int, list[int]]:
    """Insert texts (vector i = unit(i)); returns (cube, keys)."""
    cube = store.cube_id(owner, create=True)
    assert cube is not None
    items = store.insert(
        cube, rows(*texts, **fields), np.stack([unit(i) for i in range(len(texts))])
    )
    keys = []
    for item in items:
        found = store.locate(item.id)
        assert found is not None and found.cube == cube and found.owner == owner
        keys.append(found.key)
    return cube, keys


# -- memories and versions -------------------------------------------------------------------


def test_insert_read_locate_and_owners(store: Store) -> None:
    assert store.cube_id("user:a") is None
    cube, keys = add(store, "user:a", "alpha", "beta")
    assert store.cube_id("user:a") == cube
    items = store.by_keys(cube, keys)
    assert [items[k].memory for k in keys] == ["alpha", "beta"]
    assert items[keys[0]].provenance.owner == "user:a" and items[keys[0]].version == 1
    assert items[keys[0]].created_at.tzinfo is not None
    add(store, "user:b", "gamma")
    assert store.owners() == ["user:a", "user:b"]
    mid = items[keys[0]].id
    assert store.ids_with_prefix(mid[:6], 10) == sorted(
        i for i in (items[k].id for k in keys) if i.startswith(mid[:6])
    )
    assert store.locate("no-such-id") is None


def test_insert_is_idempotent_on_source_id(store: Store) -> None:
    cube, [key] = add(store, "user:a", "once", source_id="src-1")
    again = store.insert(cube, rows("once", source_id="src-1"), unit(0)[None, :])
    assert store.locate(again[0].id).key == key  # type: ignore[union-attr]
    assert len(store.keys(cube, MemoryFilter())) == 1
    mid = store.by_keys(cube, [key])[key].id
    assert store.known_sources(cube, ["src-1", mid, "other"]) == {"src-1", mid}


def test_versions_chain_update_archive_restore(store: Store) -> None:
    cube, [key] = add(store, "user:a", "v1 text", metadata={"n": 1})
    item = store.change(
        cube,
        key,
        Change(
            VersionEvent.UPDATE,
            text="v2 text",
            index_text="v2 text",
            vector=unit(3),
            metadata={"n": 2},
            reason="fix",
            source="api",
        ),
    )
    assert item.memory == "v2 text" and item.version == 2 and item.metadata == {"n": 2}
    assert store.set_state(cube, [key], MemoryState.ARCHIVED, VersionEvent.DELETE, "gone") == 1
    assert store.set_state(cube, [key], MemoryState.ARCHIVED, VersionEvent.DELETE, "x") == 0
    assert store.set_state(cube, [key], MemoryState.ACTIVE, VersionEvent.RESTORE, None) == 1
    history = store.history(cube, key)
    assert [(v.version, v.event, v.memory, v.reason) for v in history] == [
        (1, VersionEvent.ADD, "v1 text", None),
        (2, VersionEvent.UPDATE, "v2 text", "fix"),
        (3, VersionEvent.DELETE, "v2 text", "gone"),
        (4, VersionEvent.RESTORE, "v2 text", None),
    ]
    assert history[0].metadata == {"n": 1} and history[1].source == "api"
    with pytest.raises(NotFoundError):
        store.change(cube, key + 1000, Change(VersionEvent.UPDATE, metadata={}))


def test_purge_erases_and_empties_the_cube(store: Store) -> None:
    cube, keys = add(store, "user:a", "secret one", "secret two")
    add(store, "user:b", "other owner")
    assert store.purge(cube, keys[:1]) == 1
    assert store.history(cube, keys[0]) == [] and store.by_keys(cube, keys[:1]) == {}
    assert store.purge(cube, keys) == 1
    assert store.owners() == ["user:b"]
    with pytest.raises(CubeGoneError):
        store.insert(cube, rows("late"), unit(0)[None, :])
    with pytest.raises(NotFoundError):
        store.stats(cube)
    fresh = store.cube_id("user:a", create=True)
    assert fresh is not None and fresh != cube  # cube ids are never reused
    _, [key] = add(store, "user:a", "new")
    assert key > max(keys)  # nor keys


def test_stats_and_access_counts(store: Store) -> None:
    cube, keys = add(store, "user:a", "a", "b", "c", session_id="s1")
    store.set_state(cube, keys[:1], MemoryState.ARCHIVED, VersionEvent.DELETE, None)
    stats = store.stats(cube)
    assert (stats.owner, stats.active, stats.archived, stats.sessions) == ("user:a", 2, 1, 1)
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.record_access(cube, {keys[1]: 2, keys[2]: 1}, at)
    items = store.by_keys(cube, keys)
    assert (items[keys[1]].access_count, items[keys[2]].access_count) == (2, 1)
    assert items[keys[1]].last_accessed_at == at


# -- listing, filters, search ----------------------------------------------------------------


def test_pages_follow_insertion_order(store: Store) -> None:
    cube, keys = add(store, "user:a", *[f"m{i}" for i in range(5)])
    seen, after = [], None
    while True:
        items, after = store.page(cube, MemoryFilter(), 2, after)
        seen += [i.memory for i in items]
        if after is None:
            break
    assert seen == [f"m{i}" for i in range(5)]


def test_filters_types_sessions_metadata_and_time(store: Store) -> None:
    cube = store.cube_id("user:a", create=True)
    assert cube is not None
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    new = [
        replace(new_row("r0"), metadata={"n": 1, "tag": "x"}, session_id="s1", occurred_at=t0),
        replace(
            new_row("r1"),
            metadata={"n": 5, "tag": "y"},
            session_id="s2",
            occurred_at=t0 + timedelta(days=2),
        ),
        replace(new_row("r2"), metadata={"n": 9}, type="fact", agent_id="bot"),
    ]
    store.insert(cube, new, np.stack([unit(i) for i in range(3)]))

    def texts(**kw: object) -> list[str]:
        keys = store.keys(cube, MemoryFilter(**kw))  # type: ignore[arg-type]
        items = store.by_keys(cube, keys)
        return sorted(items[k].memory for k in keys)

    assert texts() == ["r0", "r1", "r2"]
    assert texts(types=("fact",)) == ["r2"]
    assert texts(session_id="s2") == ["r1"]
    assert texts(agent_id="bot") == ["r2"]
    assert texts(metadata={"n": {"$gt": 1}}) == ["r1", "r2"]
    assert texts(metadata={"n": {"$gte": 5, "$lt": 9}}) == ["r1"]
    assert texts(metadata={"tag": {"$in": ["x", "z"]}}) == ["r0"]
    assert texts(metadata={"tag": {"$eq": None}}) == ["r2"]
    assert texts(metadata={"tag": {"$ne": None}}) == ["r0", "r1"]
    assert texts(metadata={"tag": {"$ne": "x"}}) == ["r1"]
    assert texts(since=t0 + timedelta(days=1), until=t0 + timedelta(days=3)) == ["r1"]
    page, _ = store.page(cube, MemoryFilter(metadata={"n": {"$lte": 5}}), 10, None)
    assert [i.memory for i in page] == ["r0", "r1"]


def test_lexical_finds_words_in_one_cube_and_quotes_everything(store: Store) -> None:
    cube, keys = add(store, "user:a", "the cat sat on the mat", "dogs bark loudly", "a cat nap")
    add(store, "user:b", "cat of another owner")
    found = store.lexical(cube, ["cat"], 10, MemoryFilter())
    assert sorted(s.key for s in found) == sorted([keys[0], keys[2]])
    assert {s.key for s in store.lexical(cube, ["dogs", "nap"], 10, MemoryFilter())} == {
        keys[1],
        keys[2],
    }
    for hostile in ["cat & !dogs", "'", '"', "cat:*", "(", "OR", "-cat", "a|b", "\\", "NEAR("]:
        store.lexical(cube, [hostile], 5, MemoryFilter())  # never a syntax error
    assert store.lexical(cube, [], 5, MemoryFilter()) == []


def test_dense_search_and_archived_rows(store: Store) -> None:
    cube, keys = add(store, "user:a", "zero", "one", "two")
    top = store.dense(cube, unit(1), 2, MemoryFilter())
    assert top[0].key == keys[1] and top[0].score == pytest.approx(1.0)
    store.set_state(cube, keys[1:2], MemoryState.ARCHIVED, VersionEvent.DELETE, None)
    assert keys[1] not in [s.key for s in store.dense(cube, unit(1), 3, MemoryFilter())]
    archived = store.dense(cube, unit(1), 3, MemoryFilter(states=(MemoryState.ARCHIVED,)))
    assert [s.key for s in archived] == [keys[1]]
    np.testing.assert_allclose(store.vectors(cube, [keys[2], keys[0]]), [unit(2), unit(0)])


def test_snapshot_follows_writes_of_this_and_another_store(store: Store) -> None:
    cube, keys = add(store, "user:a", "first", "second")
    snap = store.snapshot(cube)
    assert list(snap.keys) == keys and snap.texts == ["first", "second"]
    other = another(store)
    try:
        [item] = other.insert(cube, rows("from elsewhere"), unit(5)[None, :])
        key = other.locate(item.id).key  # type: ignore[union-attr]
        assert list(store.snapshot(cube).keys) == [*keys, key]
        assert store.dense(cube, unit(5), 1, MemoryFilter())[0].key == key
        other.purge(cube, keys[:1])
        assert list(store.snapshot(cube).keys) == [keys[1], key]
    finally:
        other.close()
    store.set_state(cube, [key], MemoryState.ARCHIVED, VersionEvent.DELETE, None)
    assert list(store.snapshot(cube).keys) == [keys[1]]


def test_owners_never_see_each_other(store: Store) -> None:
    cube_a, keys_a = add(store, "user:a", "alpha secret")
    cube_b, keys_b = add(store, "user:b", "beta secret")
    assert store.by_keys(cube_a, keys_b) == {}
    assert store.history(cube_a, keys_b[0]) == []
    assert store.lexical(cube_a, ["beta", "secret"], 10, MemoryFilter())[0].key == keys_a[0]
    assert store.purge(cube_a, keys_b) == 0 and store.by_keys(cube_b, keys_b)
    assert store.set_state(cube_a, keys_b, MemoryState.ARCHIVED, VersionEvent.DELETE, None) == 0


def test_transaction_commits_all_or_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        cube = store.cube_id("user:t", create=True)
        assert cube is not None
        store.insert(cube, rows("never"), unit(0)[None, :])
        raise RuntimeError("boom")
    assert store.cube_id("user:t") is None and store.owners() == []
    with store.transaction():
        cube = store.cube_id("user:t", create=True)
        assert cube is not None
        store.insert(cube, rows("kept"), unit(0)[None, :])
    assert len(store.keys(cube, MemoryFilter())) == 1


# -- feedback, retention -------------------------------------------------------------------


def test_feedback_log_and_purge(store: Store) -> None:
    cube, keys = add(store, "user:a", "good", "bad")
    assert len(store.feedback(cube)) == 0
    events = [
        FeedbackEvent(keys[0], FeedbackLabel.CITED),
        FeedbackEvent(keys[1], FeedbackLabel.WRONG),
    ]
    store.add_feedback(cube, "which one?", unit(2), events, {"bias": 0.5})
    log = store.feedback(cube)
    assert log.queries == ["which one?"] and sorted(log.keys.tolist()) == sorted(keys)
    assert set(log.labels.tolist()) == {"cited", "wrong"} and log.weights == {"bias": 0.5}
    np.testing.assert_allclose(log.vectors, unit(2)[None, :])
    store.purge(cube, keys[1:])
    assert store.feedback(cube).keys.tolist() == [keys[0]]
    store.purge(cube, keys[:1])
    with pytest.raises(CubeGoneError):
        store.add_feedback(cube, "q", unit(0), [], None)


def test_retention_rows_reinforce_pin_and_gc(store: Store) -> None:
    cube, keys = add(store, "user:a", "w0", "w1", "w2", tier="working", metadata={"importance": 3})
    rows_ = store.retention_rows(cube)
    assert [r.tier for r in rows_] == ["working"] * 3 and rows_[0].importance == 3.0
    at = datetime(2030, 1, 1, tzinfo=UTC)
    after = store.reinforce(cube, keys[:1], lambda r: 7.5, True, at)
    assert (after[0].strength, after[0].recall_count, after[0].last_recalled_at) == (7.5, 1, at)
    assert store.set_retention(cube, keys[1:2], pinned=True, reason="keep", source="t") == 1
    assert store.history(cube, keys[1])[-1].reason == "keep"
    plan = RetentionPlan(
        displace=(keys[0],),
        promote={keys[1]: "useful"},
        promote_strength=3.0,
        evict={keys[1]: "old", keys[2]: "old"},
    )
    done = store.apply_retention(cube, plan, "gc")
    assert done.displace == (keys[0],) and set(done.promote) == {keys[1]}
    assert set(done.evict) == {keys[2]}  # a pinned memory is not evicted
    assert keys[2] not in store.snapshot(cube).keys.tolist()
    tiers = {r.key: r.tier for r in store.retention_rows(cube)}
    assert tiers == {keys[0]: "episodic", keys[1]: "long_term"}
    assert store.retention_rows(cube, tiers=("episodic",))[0].key == keys[0]


def test_expiry_and_policies(store: Store) -> None:
    soon = datetime(2030, 1, 1, tzinfo=UTC)
    cube, keys = add(store, "user:a", "short lived", expires_at=soon)
    assert store.expired(cube, soon - timedelta(seconds=1)) == []
    assert store.expired(cube, soon) == keys
    store.set_retention_policy(cube, "note", {"max_age_days": 3})
    store.set_retention_policy(cube, "*", {"decay": "none"})
    assert store.retention_policies(cube) == {"note": {"max_age_days": 3}, "*": {"decay": "none"}}
    store.set_retention_policy(cube, "note", None)
    assert store.retention_policies(cube) == {"*": {"decay": "none"}}


# -- jobs, idempotency, artifacts ----------------------------------------------------------


def test_jobs_queue_claim_finish_retry(store: Store) -> None:
    cube, _ = add(store, "user:a", "x")
    jobs = [NewJob(cube, "s1", "facts", f"h{i}", {"i": i}) for i in range(3)]
    assert store.enqueue_jobs(jobs, 2) == 3
    assert store.enqueue_jobs(jobs, 2) == 0  # the same input is never queued twice
    assert store.enqueue_jobs([NewJob(cube, "s2", "facts", "h0")], 2) == 1
    job = store.claim_job(60)
    assert job is not None and job.owner == "user:a" and job.attempts == 1
    assert len(job.ids) == 3 and [p["i"] for p in job.payloads] == [0, 1, 2]
    store.finish_job(job, JobState.FAILED, error="boom")
    other = store.claim_job(60)
    assert other is not None and other.session_id == "s2"
    store.finish_job(other, JobState.DONE, result={"facts": 2})
    assert store.claim_job(60) is None
    listed = store.jobs(cube, (JobState.DONE,), 10)
    assert [j.result for j in listed] == [{"facts": 2}]
    assert store.retry_jobs(cube, None) == 3
    assert len(store.jobs(None, (JobState.QUEUED,), 10)) == 3


def test_expired_lease_is_claimed_again_and_concurrent_claims_differ(store: Store) -> None:
    cube, _ = add(store, "user:a", "x")
    store.enqueue_jobs([NewJob(cube, f"s{i}", "facts", "h") for i in range(6)], 3)
    first = store.claim_job(-1)  # its lease has already run out
    assert first is not None
    again = store.claim_job(60)
    assert again is not None and again.id == first.id and again.attempts == 2
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (job := store.claim_job(60)) is not None:
            with lock:
                claimed.extend(job.ids)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == len(set(claimed)) == 5


def test_idempotency_keys(store: Store) -> None:
    assert store.claim_idempotency("user:a", "k1", "fp", 3600, 60) is None
    running = store.claim_idempotency("user:a", "k1", "fp", 3600, 60)
    assert running is not None and running.state == "running"
    store.finish_idempotency("user:a", "k1", 201, '{"ok": true}')
    done = store.claim_idempotency("user:a", "k1", "fp", 3600, 60)
    assert done is not None and (done.state, done.status, done.response) == (
        "done",
        201,
        '{"ok": true}',
    )
    assert store.claim_idempotency("user:b", "k1", "fp", 3600, 60) is None  # per owner
    store.release_idempotency("user:b", "k1")
    assert store.claim_idempotency("user:b", "k1", "fp", 3600, 60) is None


def test_artifact_provenance(store: Store) -> None:
    store.record_artifact("activation", "user:a", "block-1", [("m1", 1), ("m2", 3)])
    store.record_artifact("parametric", "user:b", "v1", [("m1", 2)])
    assert [(a.memory_id, a.memory_version) for a in store.artifacts(owner="user:a")] == [
        ("m1", 1),
        ("m2", 3),
    ]
    assert {a.owner for a in store.artifacts(memory_ids=["m1"])} == {"user:a", "user:b"}
    assert store.artifacts(memory_ids=[]) == []
    store.record_artifact("activation", "user:a", "block-1", [("m3", 1)])  # replaces
    assert [a.memory_id for a in store.artifacts(tier="activation")] == ["m3"]
    store.forget_artifact("activation", "user:a", "block-1")
    assert [a.artifact for a in store.artifacts()] == ["v1"]
    assert isinstance(store.artifacts()[0].created_at, str)


def test_the_recorded_embedder_is_read_back(store: Store) -> None:
    """What `embedder.adapter = "auto"` follows: none before the first check, then the
    first embedder's name, which a second, different one does not replace."""
    from engram.errors import EmbedderMismatchError

    assert store.recorded_embedder() is None
    store.check_embedder("enc+conv-v1", DIM)
    assert store.recorded_embedder() == "enc+conv-v1"
    with pytest.raises(EmbedderMismatchError):
        store.check_embedder("enc", DIM)
    assert store.recorded_embedder() == "enc+conv-v1"
