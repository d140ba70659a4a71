"""`engram bench ingest`: ingest speed and search latency on LoCoMo-format conversations."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram.bench.report import bench_memory, percentile
from engram.importers import locomo_requests
from engram.importers.locomo import read_locomo


@dataclass(frozen=True)
class IngestResult:
    conversation: str
    turns: int
    ingest_s: float
    queries: int
    search_ms: list[float]

    def summary(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "turns": self.turns,
            "ingest_turns_per_s": round(self.turns / self.ingest_s, 1),
            "queries": self.queries,
            "search_ms_p50": round(percentile(self.search_ms, 0.5), 2),
            "search_ms_p95": round(percentile(self.search_ms, 0.95), 2),
        }


def run(data: Path, convs: list[int] | None, pipeline: str, k: int) -> dict[str, Any]:
    """Ingest each chosen conversation into a fresh store, then time every QA question."""
    conversations = read_locomo(data)
    chosen = [conversations[i] for i in convs] if convs else conversations
    results = []
    with bench_memory(pipeline=pipeline) as memory:
        embedder_name = memory.embedder.name
        for conv in chosen:
            requests = locomo_requests(conv)
            start = time.perf_counter()
            memory.add_batch(requests)
            ingest_s = time.perf_counter() - start
            timings = []
            for q in conv.questions:
                t0 = time.perf_counter()
                memory.search(q.question, user_id=conv.sample_id, k=k)
                timings.append((time.perf_counter() - t0) * 1000)
            results.append(
                IngestResult(conv.sample_id, len(conv.turns), ingest_s, len(timings), timings)
            )
    turns = sum(r.turns for r in results)
    all_ms = [ms for r in results for ms in r.search_ms]
    return {
        "config": {
            "data": str(data),
            "convs": convs,
            "pipeline": pipeline,
            "k": k,
            "embedder": embedder_name,
            "embedding_cache": False,
        },
        "conversations": [r.summary() for r in results],
        "total": {
            "turns": turns,
            "ingest_turns_per_s": round(turns / sum(r.ingest_s for r in results), 1),
            "queries": len(all_ms),
            "search_ms_p50": round(percentile(all_ms, 0.5), 2),
            "search_ms_p95": round(percentile(all_ms, 0.95), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
    }


def markdown(result: dict[str, Any], command: str) -> str:
    rows = [
        "| conversation | turns | ingest turns/s | queries | search p50 ms | search p95 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in [*result["conversations"], {"conversation": "**all**", **result["total"]}]:
        rows.append(
            f"| {c['conversation']} | {c['turns']} | {c['ingest_turns_per_s']} | {c['queries']} "
            f"| {c['search_ms_p50']} | {c['search_ms_p95']} |"
        )
    cfg = result["config"]
    return (
        "## Ingest and search latency\n\n"
        f"Command: `{command}`  \n"
        f"Pipeline `{cfg['pipeline']}`, k={cfg['k']}, embedder {cfg['embedder']} "
        "(no embedding cache), SQLite store in a fresh temporary directory. Search time "
        "includes embedding the query. Peak RSS "
        f"{result['total']['peak_rss_mb']} MB.\n\n" + "\n".join(rows)
    )
