"""Many clients at once against a real uvicorn server over one SQLite store: no "database
is locked", no 5xx, no lost writes, and searches run while writes go on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from _server_helpers import make_keys, running_server
from engram import Memory
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.server.app import create_app
from engram.store.sqlite_keys import SQLiteKeyStore

THREADS = 16
WRITES_PER_THREAD = 12


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("concurrency")
    with Memory(home=home, embedder=embedder) as memory:
        store = SQLiteKeyStore(home / "keys.db")
        keys = make_keys(store)
        app = create_app(memory, store, ServerConfig(rate_limit_per_s=0))
        with running_server(app) as url:
            yield memory, keys, url


@pytest.mark.slow
def test_concurrent_writes_and_reads_lose_nothing(served: Any) -> None:
    memory, keys, url = served
    failures: list[str] = []
    written: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def client(n: int) -> None:
        headers = keys.alice if n % 2 == 0 else keys.bob
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            start.wait()
            for i in range(WRITES_PER_THREAD):
                text = f"thread {n} note {i} about concurrency"
                added = http.post("/v1/memories", json={"text": text, "session_id": f"t{n}"})
                if added.status_code != 201:
                    failures.append(f"add {added.status_code} {added.text}")
                    continue
                mid = added.json()["items"][0]["id"]
                with lock:
                    written.append(mid)
                checks = [
                    http.post("/v1/search", json={"query": "concurrency", "k": 3}),
                    http.get(f"/v1/memories/{mid}"),
                    http.get("/v1/memories", params={"limit": 5, "session_id": f"t{n}"}),
                ]
                if i % 4 == 3:
                    checks.append(http.patch(f"/v1/memories/{mid}", json={"text": text + "!"}))
                failures.extend(
                    f"{r.request.method} {r.request.url.path} {r.status_code} {r.text}"
                    for r in checks
                    if r.status_code >= 300
                )

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(written) == THREADS * WRITES_PER_THREAD
    stored = {
        item.id
        for owner in ("alice", "bob")
        for item in memory.iter_all(user_id=owner)
        if "about concurrency" in item.memory
    }
    assert stored == set(written)  # every acknowledged write is there, nothing extra
    assert len(written) == len(set(written))
    locked = [line for line in failures if "locked" in line]
    assert not locked
