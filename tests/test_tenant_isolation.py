"""Multi-tenant isolation beyond access control: nothing one owner writes or searches for
changes what another owner observes — neither search scores (to the bit, for every
registered pipeline) nor search timing (the embedding cache and the coalescer)."""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from _engram_helpers import HashEmbedder
from engram import Memory
from engram.embed import CachedEmbedder, CoalescingEmbedder, Embedder
from engram.text.retrieval import PIPELINES

# -- search scores: every statistic comes from the owner's own cube -------------------

ALICE = [
    ("Maya", "I adopted a zebra finch called Biscuit last spring."),
    ("Sam", "A zebra finch? Does Biscuit sing much?"),
    ("Maya", "Every morning, and she hates the vacuum cleaner."),
    ("Sam", "My sister keeps bees on her roof in Lisbon."),
    ("Maya", "I moved to Lisbon in May 2023 for the new job."),
    ("Sam", "How is the new job going?"),
]
ALICE_LATER = [
    ("Maya", "We hiked the Arrabida trail on Sunday with the zebra-striped backpack."),
    ("Sam", "The weather in Lisbon was great for hiking."),
]
QUERIES = [
    "zebra",
    "what pets does Maya have?",
    "when did Maya move to Lisbon?",
    "how many bees does the sister keep",
    "hiking trail",
]


def _alice(memory: Memory) -> None:
    for session, turns in (("s1", ALICE), ("s2", ALICE_LATER)):
        memory.add(
            [{"role": "user", "name": n, "content": t} for n, t in turns],
            user_id="alice",
            session_id=session,
            timestamp="2023-05-08T13:56:00",
        )
        memory.search("zebra", user_id="alice")  # the next add patches a cached snapshot


def _scores(memory: Memory) -> dict[tuple[str, str], list[tuple[str, float]]]:
    return {
        (pipeline, query): [
            (h.id, h.score) for h in memory.search(query, user_id="alice", k=20, pipeline=pipeline)
        ]
        for pipeline in sorted(PIPELINES)
        for query in QUERIES
    }


def _foreign_writes(memory: Memory) -> None:
    """Everything another owner might do that once moved alice's scores."""
    bob = [f"zebra zebra number {i}, a zebra in Lisbon" for i in range(30)]
    bob += QUERIES + [t for _, t in ALICE]  # alice's exact queries and texts
    items = memory.add(bob, user_id="bob", session_id="b1")
    memory.add("a zebra finch and a hiking trail", agent_id="planner")
    memory.feedback("zebra", cited=[items[0].id], wrong=[items[1].id], user_id="bob")
    memory.search("zebra", user_id="bob")
    memory.delete(items[2].id, user_id="bob")  # archived
    memory.delete(items[3].id, hard=True, user_id="bob")  # erased: FTS5 optimize
    memory.update(items[4].id, "a zebra crossing in Porto", user_id="bob")


def test_bm25_score_does_not_move_with_another_owners_rows(memory: Memory) -> None:
    """The reported case: thirty foreign 'zebra' rows moved alice's own score (FTS5's
    bm25() computes IDF over every owner's rows)."""
    memory.add(["my zebra is called Stripes", "I like tea"], user_id="alice")
    before = memory.search("zebra", user_id="alice", pipeline="bm25")[0].score
    memory.add([f"zebra row {i}" for i in range(30)], user_id="bob")
    assert memory.search("zebra", user_id="alice", pipeline="bm25")[0].score == before
    assert before > 0.1


def test_every_pipeline_scores_are_bit_identical_after_foreign_writes(memory: Memory) -> None:
    _alice(memory)
    before = _scores(memory)
    assert all(before[("bm25", q)] for q in QUERIES if q != "how many bees does the sister keep")
    _foreign_writes(memory)
    after = _scores(memory)
    changed = [key for key in before if before[key] != after[key]]
    assert changed == [], changed


def test_scores_are_a_function_of_the_stored_cube(tmp_path: Path, embedder: Embedder) -> None:
    """The same cube reopened by a fresh process (snapshot rebuilt from the database) ranks
    and scores exactly as the long-running one whose snapshot followed the writes: so no
    other owner's write that makes a process reload a snapshot can move the scores."""
    with Memory(home=tmp_path, embedder=embedder) as memory:
        _alice(memory)
        live = _scores(memory)
    with Memory(home=tmp_path, embedder=embedder) as memory:
        assert _scores(memory) == live


# -- the embedding cache: one owner's texts never make another owner's search faster ---

_WORDS = (
    "river garden window orange silver market pencil harbor candle meadow violin lantern "
    "copper thunder basket marble island feather cactus bridge tunnel puzzle rocket velvet"
).split()


def _sentence(rng: random.Random, length: int = 60) -> str:
    """A never-seen text of exactly `length` characters (random words and a random tag)."""
    tag = "".join(rng.choices(string.ascii_lowercase, k=8))
    words = " ".join(rng.choice(_WORDS) for _ in range(12))
    return f"{tag} {words}"[:length].ljust(length, "x")


def _search_ms(memory: Memory, text: str, user_id: str) -> float:
    start = time.perf_counter()
    memory.search(text, user_id=user_id, k=5)
    return (time.perf_counter() - start) * 1000


def _paired_timings(
    memory: Memory, searcher: str, stored: list[str], rng: random.Random
) -> tuple[list[float], list[float]]:
    """Interleaved pairs: `searcher` searches a stored text and a never-seen text of the
    same length, in random order within each pair (drift hits both groups alike)."""
    known, fresh = [], []
    for text in stored:
        new = _sentence(rng, len(text))
        if rng.random() < 0.5:
            known.append(_search_ms(memory, text, searcher))
            fresh.append(_search_ms(memory, new, searcher))
        else:
            fresh.append(_search_ms(memory, new, searcher))
            known.append(_search_ms(memory, text, searcher))
    return known, fresh


PAIRS = 200


def test_another_owners_text_is_a_cache_miss(memory: Memory) -> None:
    cache = memory.embedder
    assert isinstance(cache, CachedEmbedder)
    rng = random.Random(7)
    text = _sentence(rng)
    memory.add(text, user_id="alice")
    memory.add(_sentence(rng), user_id="bob")
    misses = cache.misses
    memory.search(text, user_id="bob")  # alice's exact text: bob's own cache has no entry
    assert cache.misses == misses + 1
    memory.search(text, user_id="alice")  # alice's own text: her cache has it
    memory.search(text, user_id="bob")  # and now bob's too (his own earlier search)
    assert cache.misses == misses + 1


def test_search_timing_does_not_tell_whether_another_owner_stored_a_text(
    memory: Memory,
) -> None:
    """Owner bob searching alice's exact stored texts is not distinguishable from bob
    searching never-seen texts of the same length (Mann-Whitney U over 200 interleaved
    pairs), while the same test does tell alice's own stored texts from new ones (the
    positive control: a cache hit is detectable, so the negative result means something).

    Under no difference the p-value is uniform, so one run in twenty falls below 0.05 by
    chance: a failing run is repeated once on new texts (a real leak, 5x faster as
    reported, gives p < 1e-30 every time)."""
    rng = random.Random(11)
    for owner in ("alice", "bob"):  # both have a cube, and bob's has texts to rank
        memory.add([_sentence(rng) for _ in range(30)], user_id=owner)
    for _ in range(20):  # warm-up: model, snapshots, code paths
        _search_ms(memory, _sentence(rng), "bob")
        _search_ms(memory, _sentence(rng), "alice")

    def leak_p() -> float:
        alice_texts = [_sentence(rng) for _ in range(PAIRS)]
        memory.add(alice_texts, user_id="alice")
        known, fresh = _paired_timings(memory, "bob", alice_texts, rng)
        return float(mannwhitneyu(known, fresh, alternative="two-sided").pvalue)

    p_cross = leak_p()
    if p_cross <= 0.05:
        p_cross = leak_p()
    own_texts = [_sentence(rng) for _ in range(PAIRS)]
    memory.add(own_texts, user_id="alice")
    known, fresh = _paired_timings(memory, "alice", own_texts, rng)
    p_own = float(mannwhitneyu(known, fresh, alternative="less").pvalue)
    assert p_own < 1e-3, f"the control no longer sees cache hits (p={p_own:.3g})"
    assert np.median(known) < np.median(fresh)
    assert p_cross > 0.05, f"bob can tell alice's stored texts by timing (p={p_cross:.3g})"


# -- the coalescer: a batch never mixes owners ---------------------------------------


class _Recording(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=16)
        self.batches: list[list[str]] = []
        self._lock = threading.Lock()

    def _embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.batches.append(list(texts))
        time.sleep(0.01)
        return super()._embed(texts)


def _concurrently(calls: list[Callable[[], object]]) -> None:
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        gate.wait()
        call()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_coalesced_batches_never_mix_owners() -> None:
    inner = _Recording()
    coalescer = CoalescingEmbedder(inner, max_batch=64)
    views = {owner: coalescer.for_owner(owner) for owner in ("user:a", "user:b", "user:c")}
    calls: list[Callable[[], object]] = [
        (lambda v=view, o=owner, i=i: v.embed([f"{o} text {i}"]))
        for owner, view in views.items()
        for i in range(8)
    ]
    _concurrently(calls)
    assert sum(len(b) for b in inner.batches) == 24
    for batch in inner.batches:
        assert len({text.split()[0] for text in batch}) == 1, batch
    assert len(inner.batches) < 24  # one owner's concurrent calls still share batches


def test_owner_views_share_the_cache_capacity_but_not_entries() -> None:
    inner = HashEmbedder(dim=16)
    cache = CachedEmbedder(inner, capacity=100)
    a, b = cache.for_owner("user:a"), cache.for_owner("user:b")
    a.embed(["same text"])
    calls = inner.calls
    b.embed(["same text"])
    assert inner.calls == calls + 1  # b's first call is a miss
    a.embed(["same text"])
    assert inner.calls == calls + 1  # a's entry is still there
    assert np.array_equal(a.embed(["same text"]), b.embed(["same text"]))


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_search_of_an_empty_foreign_match_is_empty(memory: Memory, pipeline: str) -> None:
    """bob's rows never appear in, nor score into, alice's results."""
    memory.add("a quiet afternoon with tea", user_id="alice", session_id="s")
    memory.add([f"zebra {i}" for i in range(5)], user_id="bob", session_id="s")
    hits = memory.search("zebra", user_id="alice", pipeline=pipeline)
    assert all(h.provenance.user_id == "alice" for h in hits)
