"""One backend's part of `engram bench scale`, run in a process of its own (so its RSS is
its own): bulk-load the synthetic owners stage by stage, time owner-scoped searches after
each stage, then measure disk and memory per memory."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram.bench.report import percentile
from engram.bench.scale_data import Corpus, owner_batches, queries
from engram.store.base import MemoryFilter, Store
from engram.text.retrieval import QueryContext, build_pipeline

EMBEDDER = "bench-scale-synthetic"  # recorded as the store's embedder: nothing embeds


@dataclass(frozen=True)
class ScaleConfig:
    """What one `engram bench scale` run loads and measures."""

    memories: int  # in the store at the last stage
    owners: tuple[int, ...]  # sizes of the owners whose searches are timed
    filler: int  # size of each other owner (the rest of the store)
    dim: int
    queries: int  # timed searches per measured owner and stage
    k: int
    stages: tuple[float, ...]  # fractions of `memories` after which searches are timed
    batch: int
    seed: int
    pipeline: str

    def owner_sizes(self) -> list[int]:
        """Every owner's size in load order: the measured owners first, then fillers."""
        sizes = list(self.owners)
        rest = self.memories - sum(sizes)
        while rest > 0:
            sizes.append(min(self.filler, rest))
            rest -= sizes[-1]
        return sizes


def rss_bytes() -> int:
    """This process's resident set now (Linux /proc; the peak elsewhere)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * resource.getpagesize()
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class Backend:
    """A store to load and search, with what only its backend can say (disk, indexes)."""

    name = "backend"

    def __init__(self, store: Store):
        self.store = store

    def before_load(self) -> None:
        """Called before each stage's load."""

    def after_load(self) -> float:
        """Called after each stage's load; returns seconds spent building indexes."""
        return 0.0

    def disk(self, memories: int, dim: int) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.store.close()


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path, dim: int):
        from engram.store.sqlite import SQLiteStore

        self.path = path
        super().__init__(SQLiteStore(path, dim, synchronous="NORMAL"))

    def disk(self, memories: int, dim: int) -> dict[str, Any]:
        files = [p for p in self.path.parent.glob(self.path.name + "*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        vector = 2 * dim  # float16 blobs
        return {
            "bytes": total,
            "per_memory": round(total / memories, 1),
            "vector_bytes_per_memory": vector,
            "beside_vector_per_memory": round(total / memories - vector, 1),
        }


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, url: str, dim: int):
        from engram.store.postgres.store import PostgresStore

        self.url = url
        super().__init__(PostgresStore(url, dim, max_size=2))
        self.base_bytes = self._database_bytes()

    def _query(self, text: str) -> Any:
        """One statement as the tables' owner; its first row (None for a command)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(text)
            return cur.fetchone() if cur.description else None

    def _database_bytes(self) -> int:
        return int(self._query("SELECT pg_database_size(current_database())")[0])

    def before_load(self) -> None:
        from engram.store.postgres.bulk import drop_vector_index

        drop_vector_index(self.url)

    def after_load(self) -> float:
        from engram.store.postgres.bulk import build_vector_index

        started = time.perf_counter()
        build_vector_index(self.url, work_mem="4GB")
        self._query("ANALYZE memories")  # the planner's row estimates for the new rows
        return time.perf_counter() - started

    def disk(self, memories: int, dim: int) -> dict[str, Any]:
        self._query("CHECKPOINT")
        total = self._database_bytes() - self.base_bytes
        hnsw = int(self._query("SELECT pg_relation_size('memories_embedding')")[0])
        vector = 4 * dim + 8  # float4 values and the vector header, in the heap
        return {
            "bytes": total,
            "per_memory": round(total / memories, 1),
            "vector_bytes_per_memory": vector,
            "hnsw_bytes_per_memory": round(hnsw / memories, 1),
            "beside_vector_per_memory": round((total - hnsw) / memories - vector, 1),
        }


def _search(store: Store, cube: int, pipeline: Any, q: Any, k: int) -> tuple[float, int]:
    """One owner-scoped search as `Memory.search` runs it, less the query embedding:
    (milliseconds, rows the pipeline scored)."""
    started = time.perf_counter()
    ctx = QueryContext(store, cube, q.text, MemoryFilter(), lambda _text: q.vector)
    ranked = pipeline.retrieve(ctx, k)
    store.by_keys(cube, [s.key for s in ranked])
    elapsed = (time.perf_counter() - started) * 1000
    if not ranked:
        raise RuntimeError(f"a search of cube {cube} found nothing")
    return elapsed, len(ctx.snapshot)


def _measure(backend: Backend, config: ScaleConfig, corpus: Corpus) -> dict[str, Any]:
    pipeline = build_pipeline(config.pipeline)
    out: dict[str, Any] = {}
    for owner, size in enumerate(config.owners):
        cube = backend.store.cube_id(f"user:o{owner}")
        assert cube is not None
        probes = queries(corpus, owner, config.queries + 1, config.seed)
        cold, _ = _search(backend.store, cube, pipeline, probes[0], config.k)
        runs = [_search(backend.store, cube, pipeline, q, config.k) for q in probes[1:]]
        times = [ms for ms, _ in runs]
        out[str(size)] = {
            "cold_ms": round(cold, 2),
            "p50_ms": round(percentile(times, 0.50), 2),
            "p95_ms": round(percentile(times, 0.95), 2),
            "p99_ms": round(percentile(times, 0.99), 2),
            "rows_scored": round(sum(rows for _, rows in runs) / len(runs), 1),
        }
    return out


def run_backend(
    open_backend: Callable[[], Backend], config: ScaleConfig, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Load stage by stage and measure; the result of one backend."""
    corpus = Corpus.make(config.dim, seed=config.seed)
    rss_start = rss_bytes()
    backend = open_backend()
    try:
        backend.store.check_embedder(EMBEDDER, config.dim)
        sizes = config.owner_sizes()
        targets = [max(1, round(config.memories * f)) for f in config.stages]
        loaded, next_owner, load_s, index_s = 0, 0, 0.0, 0.0
        stages: list[dict[str, Any]] = []
        for target in targets:
            backend.before_load()
            started = time.perf_counter()
            while loaded < target and next_owner < len(sizes):
                cube = backend.store.cube_id(f"user:o{next_owner}", create=True)
                assert cube is not None
                for batch in owner_batches(
                    corpus, next_owner, sizes[next_owner], config.batch, config.seed
                ):
                    backend.store.insert(cube, batch.rows, batch.vectors)
                loaded += sizes[next_owner]
                next_owner += 1
            stage_load = time.perf_counter() - started
            stage_index = backend.after_load()
            load_s += stage_load
            index_s += stage_index
            progress(f"{backend.name}: {loaded:,} memories loaded, timing searches")
            stages.append(
                {
                    "memories": loaded,
                    "load_s": round(stage_load, 2),
                    "index_s": round(stage_index, 2),
                    "owners": _measure(backend, config, corpus),
                }
            )
        rss = rss_bytes() - rss_start
        return {
            "stages": stages,
            "load": {
                "memories": loaded,
                "seconds": round(load_s, 2),
                "per_s": round(loaded / load_s, 1) if load_s else None,
                # a one-shot bulk load builds the index once, as the last stage did
                "index_build_s": stages[-1]["index_s"],
                "index_builds_total_s": round(index_s, 2),
                "per_s_with_index": round(loaded / (load_s + stages[-1]["index_s"]), 1),
            },
            "disk": backend.disk(loaded, config.dim),
            "rss": {
                "bytes": rss,
                "per_memory": round(rss / loaded, 1),
                "peak_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            },
        }
    finally:
        backend.close()
