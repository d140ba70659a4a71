"""`engram bench locomo`: turn-level evidence recall on LoCoMo-format data.

Protocol (LoCoMo paper, Maharana et al. 2024): one MemCube per conversation, every turn
ingested with its dia_id and session date; query = the raw question; R@k = share of a
question's evidence dia_ids among the first k distinct source turns of the ranked hits (a
hit that covers several turns is expanded into them, each using one of the k places);
averaged over questions with at least one resolvable evidence id.
"""

from __future__ import annotations

import math
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engram.bench.report import bench_memory, percentile
from engram.config import SearchConfig
from engram.embed import CachedEmbedder
from engram.importers import locomo_requests
from engram.importers.locomo import Conversation, read_locomo
from engram.memory import Memory
from engram.types import SearchHit

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
BASELINES = ("bm25", "dense")
DEFAULT_PIPELINE = SearchConfig().pipeline


def hit_turns(hit: SearchHit) -> list[str]:
    """The source turns a hit stands for: its own source id, or those a derived memory lists."""
    sources = hit.metadata.get("source_ids")
    if isinstance(sources, list) and sources:
        return [str(s) for s in sources]
    return [hit.provenance.source_id] if hit.provenance.source_id else []


def ranked_turns(hits: list[SearchHit], limit: int) -> list[str]:
    seen: dict[str, None] = {}
    for hit in hits:
        for turn in hit_turns(hit):
            seen.setdefault(turn, None)
            if len(seen) >= limit:
                return list(seen)
    return list(seen)


@dataclass
class SystemScores:
    """Accumulates per-question metrics for one retrieval pipeline."""

    ks: list[int]
    recall: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    by_category: dict[int, dict[int, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    rr: list[float] = field(default_factory=list)
    ndcg10: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)

    def add(self, turns: list[str], evidence: list[str], category: int | None, ms: float) -> None:
        gold = set(evidence)
        for k in self.ks:
            value = len(gold & set(turns[:k])) / len(gold)
            self.recall[k].append(value)
            self.by_category[category or 0][k].append(value)
        first = next((i for i, t in enumerate(turns, start=1) if t in gold), None)
        self.rr.append(1.0 / first if first else 0.0)
        dcg = sum(1.0 / math.log2(i + 1) for i, t in enumerate(turns[:10], start=1) if t in gold)
        ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(gold), 10) + 1))
        self.ndcg10.append(dcg / ideal)
        self.search_ms.append(ms)

    def summary(self, ingest_turns_per_s: float) -> dict[str, Any]:
        def pct(values: list[float]) -> float:
            return round(100.0 * sum(values) / len(values), 2) if values else 0.0

        return {
            "recall": {str(k): pct(v) for k, v in sorted(self.recall.items())},
            "by_category": {
                str(c): {str(k): pct(v) for k, v in sorted(per_k.items())}
                for c, per_k in sorted(self.by_category.items())
            },
            "mrr": round(sum(self.rr) / len(self.rr), 4) if self.rr else 0.0,
            "ndcg@10": round(sum(self.ndcg10) / len(self.ndcg10), 4) if self.ndcg10 else 0.0,
            "search_ms": {
                "p50": round(percentile(self.search_ms, 0.5), 2),
                "p95": round(percentile(self.search_ms, 0.95), 2),
            },
            "ingest_turns_per_s": ingest_turns_per_s,
        }


def ingest(memory: Memory, conversations: list[Conversation]) -> float:
    turns = sum(len(c.turns) for c in conversations)
    start = time.perf_counter()
    for conv in conversations:
        memory.add_batch(locomo_requests(conv))
    return round(turns / (time.perf_counter() - start), 1)


def run(
    data: Path,
    ks: list[int],
    pipeline: str = "hybrid",
    convs: list[int] | None = None,
    baselines: tuple[str, ...] = BASELINES,
    ablations: list[str] | None = None,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Ingest once, then score the pipeline, the baselines and any ablation pipelines on
    the same store in one pass over the questions."""
    conversations = read_locomo(data)
    if convs:
        conversations = [conversations[i] for i in convs]
    systems = [pipeline, *[b for b in baselines if b != pipeline], *(ablations or [])]
    scores = {name: SystemScores(ks) for name in systems}
    depth = max(ks)
    with bench_memory(database_url, max_k=1000) as memory:
        embedder = memory.embedder
        backend = type(memory.store).__name__
        ingest_rate = ingest(memory, conversations)
        # ablations share one query embedding per question: their latency excludes it
        cached = CachedEmbedder(embedder, capacity=64)
        shared = Memory(memory.config, embedder=cached, store=memory.store)
        questions = 0
        for conv in conversations:
            for q in conv.questions:
                if not q.evidence:
                    continue
                questions += 1
                if ablations:
                    cached.embed_one(q.question)
                for name in systems:
                    searcher = shared if name in (ablations or []) else memory
                    t0 = time.perf_counter()
                    hits = searcher.search(
                        q.question, user_id=conv.sample_id, k=depth, pipeline=name
                    )
                    ms = (time.perf_counter() - t0) * 1000
                    scores[name].add(ranked_turns(hits, depth), q.evidence, q.category, ms)
    rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {
        "data": str(data),
        "questions": questions,
        "config": {
            "pipeline": pipeline,
            "ks": ks,
            "convs": convs,
            "embedder": embedder.name,
            "embedding_cache": False,
            "store": backend,
        },
        "peak_rss_mb": rss_mb,
        "systems": {
            ("default" if name == DEFAULT_PIPELINE else name): scores[name].summary(ingest_rate)
            for name in systems
            if name not in (ablations or [])
        },
        "ablation": {name: scores[name].summary(ingest_rate) for name in ablations or []},
    }


def markdown(result: dict[str, Any], command: str, plot_name: str | None) -> str:
    systems = result["systems"]
    ks = [str(k) for k in result["config"]["ks"]]
    store = result["config"].get("store", "SQLiteStore")
    lines = [
        "## LoCoMo turn retrieval (evidence recall)",
        "",
        f"Command: `{command}`  ",
        f"{result['questions']} questions with resolvable evidence; embedder "
        f"{result['config']['embedder']}; store {store}; no LLM; query embedding included in "
        f"latency; peak RSS {result['peak_rss_mb']} MB.",
        "",
        "| system | " + " | ".join(f"R@{k}" for k in ks) + " | MRR | NDCG@10 | p50 ms | p95 ms "
        "| ingest turns/s |",
        "|---|" + "---:|" * (len(ks) + 5),
    ]
    for name, s in systems.items():
        recall = " | ".join(f"{s['recall'][k]:.1f}" for k in ks)
        lines.append(
            f"| {name} | {recall} | {s['mrr']:.3f} | {s['ndcg@10']:.3f} | "
            f"{s['search_ms']['p50']} | {s['search_ms']['p95']} | {s['ingest_turns_per_s']} |"
        )
    anchor = {"5": 56.7, "10": 66.2, "25": 76.7, "50": 82.7}
    lines.append(
        "| DRAGON (LoCoMo paper, Table 3) | "
        + " | ".join(f"{anchor[k]}" if k in anchor else "" for k in ks)
        + " | | | | | |"
    )
    k_cat = "10" if "10" in ks else ks[-1]
    lines += ["", f"Per category, R@{k_cat}:", ""]
    cats = sorted({c for s in systems.values() for c in s["by_category"]}, key=int)
    lines.append(
        "| system | " + " | ".join(f"{c} {CATEGORIES.get(int(c), '?')}" for c in cats) + " |"
    )
    lines.append("|---|" + "---:|" * len(cats))
    for name, s in systems.items():
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{s['by_category'][c][k_cat]:.1f}" if c in s["by_category"] else "" for c in cats
            )
            + " |"
        )
    if plot_name:
        lines += ["", f"![recall vs k]({plot_name})"]
    if result.get("ablation"):
        lines += ["", *ablation_table(result)]
    return "\n".join(lines)


def ablation_table(result: dict[str, Any]) -> list[str]:
    """What each part of the default pipeline adds: recall without it, and the change."""
    full = next(iter(result["systems"].values()))
    lines = [
        "### Ablation: the default pipeline without one part",
        "",
        "| pipeline | R@5 | R@10 | Δ R@5 | Δ R@10 | p50 ms (query vector cached) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["ablation"].items():
        r5, r10 = s["recall"].get("5", 0.0), s["recall"].get("10", 0.0)
        d5, d10 = r5 - full["recall"].get("5", 0.0), r10 - full["recall"].get("10", 0.0)
        lines.append(
            f"| {name} | {r5:.1f} | {r10:.1f} | {d5:+.1f} | {d10:+.1f} | {s['search_ms']['p50']} |"
        )
    return lines


def plot(result: dict[str, Any], path: Path) -> bool:
    """Recall-vs-k PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ks = result["config"]["ks"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in result["systems"].items():
        ax.plot(ks, [s["recall"][str(k)] for k in ks], marker="o", label=name)
    ax.plot([5, 10, 25, 50], [56.7, 66.2, 76.7, 82.7], "k--", marker="x", label="DRAGON (paper)")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (distinct turns)")
    ax.set_ylabel("evidence recall %")
    ax.set_title("LoCoMo turn retrieval")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
