"""`engram bench vectors`: exact top-k search latency of candidate vector indexes.

Measures what the SQLite store's in-process numpy index costs against faiss (IndexFlatIP)
and sqlite-vec (vec0 table through apsw) when those optional packages are installed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engram.bench.report import percentile
from engram.store.vector_index import top_k

Searcher = Callable[[np.ndarray], Any]


def _numpy(matrix: np.ndarray, k: int) -> Searcher:
    keys = np.arange(len(matrix), dtype=np.int64)
    return lambda q: top_k(keys, matrix @ q, k)


def _faiss(matrix: np.ndarray, k: int) -> Searcher | None:
    try:
        import faiss
    except ImportError:
        return None
    index = faiss.IndexFlatIP(matrix.shape[1])
    index.add(matrix)
    return lambda q: index.search(q[None, :], k)


def _sqlite_vec(matrix: np.ndarray, k: int) -> Searcher | None:
    try:
        import apsw
        import sqlite_vec
    except ImportError:
        return None
    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(e float[{matrix.shape[1]}])")
    with conn:
        conn.executemany(
            "INSERT INTO v(rowid, e) VALUES (?, ?)",
            ((i + 1, row.tobytes()) for i, row in enumerate(matrix)),
        )
    sql = "SELECT rowid, distance FROM v WHERE e MATCH ? ORDER BY distance LIMIT ?"
    return lambda q: list(conn.execute(sql, (q.tobytes(), k)))


INDEXES: dict[str, Callable[[np.ndarray, int], Searcher | None]] = {
    "numpy (in-process matrix)": _numpy,
    "faiss IndexFlatIP": _faiss,
    "sqlite-vec vec0": _sqlite_vec,
}


def run(sizes: list[int], dim: int, k: int, queries: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        matrix = rng.standard_normal((n, dim)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        probes = matrix[rng.integers(0, n, queries)] + 0.01
        for name, build in INDEXES.items():
            t0 = time.perf_counter()
            search = build(matrix, k)
            build_s = time.perf_counter() - t0
            if search is None:
                rows.append({"index": name, "n": n, "available": False})
                continue
            times = []
            for q in probes:
                t = time.perf_counter()
                search(q)
                times.append((time.perf_counter() - t) * 1000)
            rows.append(
                {
                    "index": name,
                    "n": n,
                    "available": True,
                    "build_s": round(build_s, 3),
                    "p50_ms": round(percentile(times, 0.5), 3),
                    "p95_ms": round(percentile(times, 0.95), 3),
                }
            )
    return {"config": {"sizes": sizes, "dim": dim, "k": k, "queries": queries}, "rows": rows}


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        "## Vector index choice (exact top-k)",
        "",
        f"Command: `{command}`  ",
        f"dim={result['config']['dim']}, k={result['config']['k']}, "
        f"{result['config']['queries']} queries per size, random unit vectors.",
        "",
        "| index | memories | build s | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if r["available"]:
            lines.append(
                f"| {r['index']} | {r['n']:,} | {r['build_s']} | {r['p50_ms']} | {r['p95_ms']} |"
            )
        else:
            lines.append(f"| {r['index']} | {r['n']:,} | not installed | | |")
    return "\n".join(lines)
