"""One large add must not stall every other owner: it is embedded and committed in chunks
(each its own transaction) and the embedder serves other callers between its batches.

The measurement compares other owners' latency during a 10,000-message REST add with
their latency without it, in the same test and on the same machine, so it does not depend
on machine speed. The model is simulated: a fixed cost per call plus a cost per text,
spent in `time.sleep` (which, like torch, releases the GIL); numbers with the real model
are in docs/benchmarks.md (`python tests/test_large_add.py --real`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from _engram_helpers import HashEmbedder
from _server_helpers import Keys, make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.embed import CachedEmbedder, CoalescingEmbedder, Embedder
from engram.server.app import create_app
from engram.store.keys import KeyStore
from engram.store.sqlite_keys import SQLiteKeyStore

BIG_ADD = 10_000
PROBES = 120
INTERVAL_S = 0.06


class SimulatedModel(HashEmbedder):
    """Costs `per_call + per_text * n` seconds per call, like a CPU transformer."""

    def __init__(self, per_call: float = 0.002, per_text: float = 0.0005):
        super().__init__(dim=64, name="simulated")
        self.per_call, self.per_text = per_call, per_text

    def _embed(self, texts: list[str]) -> np.ndarray:
        time.sleep(self.per_call + self.per_text * len(texts))
        return super()._embed(texts)


def production_like(model: Embedder) -> Embedder:
    """The wrapping `build_embedder` does: per-owner LRU cache over the coalescer."""
    return CachedEmbedder(CoalescingEmbedder(model, max_batch=32), capacity=8192)


def big_body(n: int = BIG_ADD) -> dict[str, Any]:
    """~23 bytes a message: 10,000 messages make a ~229 KB body, as in the report."""
    return {"messages": [{"content": f"imported line {i:05d}"} for i in range(n)]}


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def probe_latencies(
    client: TestClient,
    headers: dict[str, str],
    n: int,
    until: Callable[[], bool],
    interval: float = 0.0,
) -> list[float]:
    """Another owner alternates adds and searches of new texts (no cache can help). With an
    `interval`, one request every `interval` s on a fixed schedule, and a latency counts
    from the scheduled start, so a stall counts for every request it delays (no
    coordinated omission); the interval must exceed the unloaded latency."""
    out: list[float] = []
    serial = count()
    origin = time.perf_counter()
    while len(out) < n and not until():
        i = next(serial)
        scheduled = origin + i * interval if interval else time.perf_counter()
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        if i % 2:
            response = client.post(
                "/v1/memories", json={"text": f"probe note {i} {time.time()}"}, headers=headers
            )
        else:
            response = client.post(
                "/v1/search", json={"query": f"probe query {i} {time.time()}"}, headers=headers
            )
        assert response.is_success, response.text
        out.append(time.perf_counter() - scheduled)
    return out


def measure(memory: Memory, keys: Keys, store: KeyStore, body: dict[str, Any]) -> dict[str, Any]:
    """Other owners' p99 without and during the large add, and the add's own time."""
    settings = ServerConfig(rate_limit_per_s=0, max_body_bytes=4 * 1024 * 1024)
    with TestClient(create_app(memory, store, settings)) as client:
        client.post("/v1/memories", json={"text": "bob's first note"}, headers=keys.bob)
        warm = probe_latencies(client, keys.bob, 20, lambda: False)  # closed loop
        # the schedule leaves the probe idle most of the time, so it never queues on itself
        interval = max(INTERVAL_S, 4 * statistics.median(warm))
        unloaded = probe_latencies(client, keys.bob, PROBES, lambda: False, interval)
        done = threading.Event()
        result: dict[str, Any] = {}

        def big() -> None:
            start = time.perf_counter()
            response = client.post("/v1/memories", json=body, headers=keys.alice)
            result["add_s"] = time.perf_counter() - start
            result["status"] = response.status_code
            result["items"] = len(response.json().get("items", []))
            done.set()

        thread = threading.Thread(target=big)
        thread.start()
        time.sleep(0.3)  # the add is parsed and under way
        loaded = probe_latencies(client, keys.bob, 100 * PROBES, done.is_set, interval)
        thread.join()
    return {
        **result,
        "unloaded_p99_ms": p99(unloaded) * 1000,
        "unloaded_median_ms": statistics.median(unloaded) * 1000,
        "loaded_p99_ms": p99(loaded) * 1000,
        "loaded_median_ms": statistics.median(loaded) * 1000,
        "loaded_max_ms": max(loaded) * 1000,
        "probes_during_add": len(loaded),
        "probe_interval_ms": interval * 1000,
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Memory, Keys, KeyStore]]:
    store = SQLiteKeyStore(tmp_path / "keys.db")
    keys = make_keys(store)
    with Memory(home=tmp_path, embedder=production_like(SimulatedModel())) as memory:
        yield memory, keys, store


def test_a_large_add_does_not_stall_other_owners(
    served: tuple[Memory, Keys, KeyStore],
) -> None:
    memory, keys, store = served
    numbers = measure(memory, keys, store, big_body())
    assert numbers["status"] == 201 and numbers["items"] == BIG_ADD
    assert memory.stats(user_id="alice").active == BIG_ADD
    # the add takes seconds (5 s of simulated model time alone): the probes ran during it
    assert numbers["probes_during_add"] >= 40, numbers
    # Before chunking the other owner waited for the whole add's embedding and its one
    # transaction: p99 of seconds, hundreds of times the unloaded p99 (docs/benchmarks.md).
    # The goal is 2x; the bound leaves room for a shared, noisy CPU (the probes compete
    # with the add for the GIL and the disk) and stays far below what a stall gives.
    loaded, unloaded = numbers["loaded_p99_ms"], numbers["unloaded_p99_ms"]
    assert loaded < max(4 * unloaded, unloaded + 500), numbers
    assert loaded < numbers["add_s"] * 1000 / 4, numbers


def test_chunks_are_separate_transactions(tmp_path: Path) -> None:
    """Each chunk commits on its own: the store's revision moves once per chunk."""
    with Memory(home=tmp_path, embedder=HashEmbedder(dim=16), limits={"add_chunk": 100}) as memory:
        memory.add("first", user_id="alice")
        cube = memory.store.cube_id("user:alice")
        assert cube is not None
        before = memory.store.snapshot(cube).rev
        memory.add([f"line {i}" for i in range(1000)], user_id="alice")
        assert memory.store.snapshot(cube).rev == before + 10


def main() -> None:
    """`python tests/test_large_add.py [--real]`: print the numbers (docs/benchmarks.md)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real", action="store_true", help="the packaged MiniLM model")
    parser.add_argument("--chunk", type=int, default=None, help="limits.add_chunk")
    parser.add_argument("--messages", type=int, default=BIG_ADD)
    args = parser.parse_args()
    import tempfile

    from engram.config import EmbedderConfig
    from engram.embed import build_embedder

    embedder = build_embedder(EmbedderConfig()) if args.real else production_like(SimulatedModel())
    embedder.embed([f"warm-up {i}" for i in range(64)])  # as `engram serve` does at start
    with tempfile.TemporaryDirectory() as home:
        store = SQLiteKeyStore(Path(home) / "keys.db")
        keys = make_keys(store)
        limits = {} if args.chunk is None else {"add_chunk": args.chunk}
        with Memory(home=home, embedder=embedder, limits=limits) as memory:
            numbers = measure(memory, keys, store, big_body(args.messages))
    for name, value in numbers.items():
        print(f"{name:>20}: {value:.1f}" if isinstance(value, float) else f"{name:>20}: {value}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
