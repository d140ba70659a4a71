"""Concurrent writers: threads sharing one Memory, processes sharing one ENGRAM_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from _engram_helpers import HashEmbedder, db_path, integrity, table_counts
from engram import Memory

TESTS_DIR = Path(__file__).resolve().parent


def test_eight_threads_adding_concurrently(memory: Memory) -> None:
    threads, per_thread = 8, 20
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        try:
            start.wait()
            ids = []
            for i in range(per_thread):
                owner = {"user_id": "shared"} if i % 2 == 0 else {"user_id": f"t{t}"}
                [item] = memory.add(
                    f"Thread {t} wrote note {i} about topic {t * 100 + i}.",
                    session_id=f"s{t}",
                    metadata={"t": t, "i": i},
                    **owner,
                )
                ids.append(item.id)
            results[t] = ids
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert errors == []
    assert sorted(results) == list(range(threads))
    all_ids = [i for ids in results.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == threads * per_thread

    shared = list(memory.iter_all(user_id="shared"))
    assert len(shared) == threads * per_thread // 2
    for t in range(threads):
        assert len(list(memory.iter_all(user_id=f"t{t}"))) == per_thread // 2
    assert table_counts(db_path(memory.home))["memories"] == threads * per_thread
    assert sorted(memory.owners()) == sorted(["user:shared"] + [f"user:t{t}" for t in range(8)])

    # the in-process vector index saw every concurrent write: dense search covers all rows
    dense = memory.search("note about a topic", user_id="shared", pipeline="dense", k=1000)
    assert {h.id for h in dense} == {i.id for i in shared}
    for t, ids in results.items():
        item = memory.get(ids[3])
        assert item.metadata == {"t": t, "i": 3}
    assert integrity(db_path(memory.home)) == "ok"


def test_readers_and_writers_in_parallel(memory: Memory) -> None:
    memory.add([f"Seed memory {i} about cooking pasta." for i in range(10)], user_id="alice")
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                hits = memory.search("cooking pasta", user_id="alice", k=5)
                assert hits and all(h.provenance.owner == "user:alice" for h in hits)
                memory.get_all(user_id="alice", limit=7)
                searches[0] += 1
                time.sleep(0.005)  # leave the two cores to the writers now and then
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    def writer(n: int) -> None:
        try:
            for i in range(15):
                [item] = memory.add(f"Writer {n} memory {i} about baking bread.", user_id="alice")
                if i % 5 == 0:
                    memory.update(item.id, f"Writer {n} memory {i} about baking rye bread.")
                if i % 7 == 0:
                    memory.delete(item.id)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    assert errors == []
    assert searches[0] > 0
    stats = memory.stats(user_id="alice")
    assert stats.active + stats.archived == 10 + 3 * 15
    assert stats.archived == 3 * 3  # i in {0, 7, 14} per writer
    dense = memory.search("bread", user_id="alice", pipeline="dense", k=1000)
    assert len(dense) == stats.active


def test_many_threads_create_the_same_new_owner_once(memory: Memory) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def add(n: int) -> None:
        try:
            barrier.wait()
            memory.add(f"first memory from thread {n}", user_id="newcomer")
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    ts = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert errors == []
    assert memory.owners() == ["user:newcomer"]
    assert len(memory.get_all(user_id="newcomer").items) == 6


CHILD = r"""
import json, sys, time
from engram import Memory
from _engram_helpers import HashEmbedder

worker, count, start_at = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))   # all processes open the fresh store together
ids = []
with Memory(embedder=HashEmbedder(64)) as mem:  # ENGRAM_HOME comes from the environment
    for i in range(count):
        owner = {"user_id": "shared"} if i % 2 == 0 else {"agent_id": f"worker{worker}"}
        [item] = mem.add({"content": f"process {worker} memory {i}", "source_id": f"p{worker}-{i}"},
                         **owner)
        ids.append(item.id)
    # a re-add from a racing process is idempotent too
    mem.add({"content": "again", "source_id": f"p{worker}-0"}, user_id="shared")
print(json.dumps(ids))
"""


def test_three_processes_share_one_engram_home(tmp_path: Path) -> None:
    home = tmp_path / "shared-home"  # does not exist yet: the processes race to create it
    workers, count = 3, 40
    env = {
        **os.environ,
        "ENGRAM_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    start_at = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(w), str(count), str(start_at)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    ids = [json.loads(out) for out, _ in outputs]
    flat = [i for chunk in ids for i in chunk]
    assert len(flat) == len(set(flat)) == workers * count

    assert integrity(db_path(home)) == "ok"
    assert table_counts(db_path(home))["memories"] == workers * count
    with Memory(home=home, embedder=HashEmbedder(64)) as mem:
        assert mem.owners() == sorted(
            ["user:shared"] + [f"agent:worker{w}" for w in range(workers)]
        )
        for w, chunk in enumerate(ids):
            for i, memory_id in enumerate(chunk):
                item = mem.get(memory_id)
                assert item.memory == f"process {w} memory {i}"
                assert item.provenance.source_id == f"p{w}-{i}"
        shared = list(mem.iter_all(user_id="shared"))
        assert len(shared) == workers * count // 2
        hits = mem.search("process 1 memory 10", user_id="shared", pipeline="bm25", k=50)
        assert ids[1][10] in {h.id for h in hits}
