"""CoalescingEmbedder: concurrent callers share model calls and get exactly their vectors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from _engram_helpers import HashEmbedder
from engram.embed import CoalescingEmbedder, EmbeddingError


class SlowHash(HashEmbedder):
    """A hash embedder that takes a while per call, so concurrent callers pile up."""

    def __init__(self, delay: float = 0.02, fail_on: str | None = None):
        super().__init__(dim=32)
        self.delay = delay
        self.fail_on = fail_on
        self.batches: list[int] = []

    def _embed(self, texts: list[str]) -> np.ndarray:
        self.batches.append(len(texts))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise EmbeddingError(f"cannot embed {self.fail_on!r}")
        return super()._embed(texts)


def _run_threads(n: int, target) -> list[BaseException]:  # noqa: ANN001
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except EmbeddingError as err:
            errors.append(err)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_callers_get_their_own_vectors_in_fewer_calls() -> None:
    inner = SlowHash()
    reference = HashEmbedder(dim=32)
    coalesced = CoalescingEmbedder(inner, max_batch=64)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = coalesced.embed([f"query number {i}", f"second text {i}"])

    assert _run_threads(24, call) == []
    for i, vectors in results.items():
        expected = reference.embed([f"query number {i}", f"second text {i}"])
        assert np.allclose(vectors, expected, atol=1e-6), i
    assert sum(inner.batches) == 48  # every text embedded exactly once
    assert len(inner.batches) < 24  # ... in fewer model calls than callers
    assert max(inner.batches) <= 64


def test_a_lone_caller_runs_at_once() -> None:
    inner = SlowHash(delay=0.0)
    coalesced = CoalescingEmbedder(inner)
    start = time.perf_counter()
    for i in range(20):
        coalesced.embed_one(f"text {i}")
    assert inner.batches == [1] * 20
    assert time.perf_counter() - start < 1.0


def test_an_oversized_request_is_queued_one_batch_at_a_time() -> None:
    inner = SlowHash(delay=0.0)
    coalesced = CoalescingEmbedder(inner, max_batch=4)
    texts = [f"t{i}" for i in range(10)]
    assert np.array_equal(coalesced.embed(texts), HashEmbedder(dim=32).embed(texts))
    assert inner.batches == [4, 4, 2]  # a query arriving meanwhile waits for one batch only


def test_a_bulk_request_goes_in_pieces_of_alike_length_and_comes_back_in_order() -> None:
    """Pieces take the texts longest first (little padding per batch); each caller still
    gets its vectors in the order it gave the texts."""
    seen: list[list[str]] = []

    class Recording(HashEmbedder):
        def _embed(self, texts: list[str]) -> np.ndarray:
            seen.append(list(texts))
            return super()._embed(texts)

    texts = [" ".join(["w"] * n) + f" t{n}" for n in (3, 40, 1, 17, 40, 9, 25, 2, 33)]
    vectors = CoalescingEmbedder(Recording(dim=32), max_batch=4).embed(texts)
    assert np.allclose(vectors, HashEmbedder(dim=32).embed(texts), atol=1e-6)
    lengths = [[len(t) for t in piece] for piece in seen]
    assert [len(piece) for piece in seen] == [4, 4, 1]
    assert all(min(a) >= max(b) for a, b in zip(lengths, lengths[1:], strict=False))


def test_a_failure_reaches_every_caller_of_that_batch_and_the_next_still_works() -> None:
    inner = SlowHash(delay=0.05, fail_on="poison")
    coalesced = CoalescingEmbedder(inner)
    gate = threading.Barrier(6)

    def call(i: int) -> None:
        gate.wait()
        coalesced.embed(["poison" if i == 0 else f"fine {i}"])

    errors = _run_threads(6, call)
    assert errors and all("poison" in str(e) for e in errors)
    assert coalesced.embed(["after the failure"]).shape == (1, 32)  # not stuck busy


def test_bad_max_batch_is_clamped() -> None:
    assert CoalescingEmbedder(HashEmbedder(dim=8), max_batch=0).max_batch == 1


@pytest.mark.parametrize("n", [1, 8])
def test_name_and_dim_pass_through(n: int) -> None:
    inner = HashEmbedder(dim=8)
    coalesced = CoalescingEmbedder(inner, max_batch=n)
    assert (coalesced.name, coalesced.dim) == (inner.name, inner.dim)
