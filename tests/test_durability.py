"""Crash safety: an acknowledged add survives SIGKILL; a failing multi-row write leaves nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _engram_helpers import HashEmbedder, db_path, integrity, new_row, table_counts
from engram import Memory, ValidationError
from engram.store.sqlite import SQLiteStore

TESTS_DIR = Path(__file__).resolve().parent

WRITER = r"""
import sys
from engram import Memory
from _engram_helpers import HashEmbedder

mem = Memory(embedder=HashEmbedder(64))  # ENGRAM_HOME from the environment
print("ready", flush=True)
n = 0
while True:
    if n % 3 == 2:  # every third add is a three-message batch: all or nothing
        items = mem.add([{"content": f"batch {n} part {j}", "source_id": f"b{n}-{j}"}
                         for j in range(3)], user_id="alice", metadata={"n": n})
    else:
        items = mem.add({"content": f"single memory {n}", "source_id": f"s{n}"},
                        user_id="alice", metadata={"n": n})
    print(" ".join(f"{n}:{item.id}" for item in items), flush=True)
    n += 1
"""


def test_sigkill_mid_add_loses_no_acknowledged_memory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "ENGRAM_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: dict[str, int] = {}
    lines = 0
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        deadline = time.monotonic() + 60
        while lines < 30 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "writer exited"
            for pair in line.split():
                n, memory_id = pair.split(":", 1)
                acked[memory_id] = int(n)
            lines += 1
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert lines == 30

    assert integrity(db_path(home)) == "ok"
    with Memory(home=home, embedder=HashEmbedder(64)) as mem:
        for memory_id, n in acked.items():
            item = mem.get(memory_id, user_id="alice")
            assert item.metadata == {"n": n}
        stored = list(mem.iter_all(user_id="alice"))
        assert len(stored) >= len(acked)
        # no batch was half written, acknowledged or not
        batches: dict[int, int] = {}
        for item in stored:
            if item.memory.startswith("batch"):
                batches[item.metadata["n"]] = batches.get(item.metadata["n"], 0) + 1
        assert batches and set(batches.values()) == {3}
        # the store is fully usable after the crash
        [after] = mem.add("written after the crash", user_id="alice")
        assert mem.search("crash", user_id="alice", pipeline="bm25")[0].id == after.id
    assert integrity(db_path(home)) == "ok"


_row = new_row


@pytest.mark.parametrize(
    "bad_text",
    [
        pytest.param(None, id="not-null-violation"),
        pytest.param("lone \ud800 surrogate", id="unencodable-text"),
    ],
)
def test_failing_multi_row_insert_writes_nothing(tmp_path: Path, bad_text) -> None:
    store = SQLiteStore(tmp_path / "engram.db", 4)
    try:
        cube = store.cube_id("user:u", create=True)
        [kept] = store.insert(cube, [_row("already here")], np.eye(4, dtype=np.float32)[:1])
        before = table_counts(store.path)
        rev = sqlite3.connect(store.path).execute("SELECT rev FROM cubes").fetchone()[0]
        with pytest.raises(Exception):  # noqa: B017 - any failure must roll everything back
            store.insert(
                cube,
                [_row("first of two is fine"), _row(bad_text)],
                np.eye(4, dtype=np.float32)[:2],
            )
        assert table_counts(store.path) == before
        conn = sqlite3.connect(store.path)
        assert conn.execute("SELECT rev FROM cubes").fetchone()[0] == rev
        assert (
            conn.execute(
                "SELECT COUNT(*) FROM memories WHERE text LIKE 'first of two%'"
            ).fetchone()[0]
            == 0
        )
        conn.close()
        # the store still works and its cache is consistent
        [after] = store.insert(cube, [_row("after the failure")], np.eye(4, dtype=np.float32)[2:3])
        keys = [store.locate(i.id).key for i in (kept, after)]
        assert [store.by_keys(cube, keys)[k].memory for k in keys] == [
            "already here",
            "after the failure",
        ]
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_failing_batch_through_memory_writes_nothing(memory: Memory) -> None:
    memory.add("existing", user_id="alice")
    before = table_counts(db_path(memory.home))
    with pytest.raises(ValidationError):
        memory.add(
            ["valid one", "valid two", {"content": "bad", "timestamp": "never"}], user_id="alice"
        )
    assert table_counts(db_path(memory.home)) == before


KILLED_BEFORE_ROWS = r"""
import os, signal
from engram import Memory
from engram.store.sqlite import SQLiteStore
from _engram_helpers import HashEmbedder

mem = Memory(embedder=HashEmbedder(64))  # ENGRAM_HOME from the environment
mem.add("an earlier owner", user_id="bob")

def killed(self, cube, rows, vectors):  # the process dies just before the rows are written
    os.kill(os.getpid(), signal.SIGKILL)

SQLiteStore.insert = killed
mem.add("never acknowledged", user_id="alice")
"""


def test_sigkill_between_new_owner_and_its_rows_leaves_no_empty_owner(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "ENGRAM_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_ROWS], env=env, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert integrity(db_path(home)) == "ok"
    with Memory(home=home, embedder=HashEmbedder(64)) as mem:
        assert mem.owners() == ["user:bob"]  # alice was never created without her memory
        [first] = mem.add("alice's first memory", user_id="alice")
        assert mem.owners() == ["user:alice", "user:bob"]
        assert [i.id for i in mem.iter_all(user_id="alice")] == [first.id]
