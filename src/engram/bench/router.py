"""`engram bench router`: the adaptive router against the default pipeline on LoCoMo-format
data — recall per category (multi-hop is category 1), latency, and how the router's routes
line up with the dataset's categories."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from engram.bench import locomo
from engram.importers.locomo import read_locomo
from engram.text.retrieval import QueryRouter

KS = [10]  # searched at k=10: the iterative route rewrites the tail of the list it is asked for


def run(data: Path, convs: list[int] | None = None) -> dict[str, Any]:
    result = locomo.run(data, KS, "adaptive", convs, baselines=("hybrid",))
    router = QueryRouter()
    routes: Counter[tuple[int, str]] = Counter()
    conversations = read_locomo(data)
    for i, conv in enumerate(conversations):
        if convs and i not in convs:
            continue
        for q in conv.questions:
            if q.evidence:
                routes[(q.category or 0, router.route(q.question).value)] += 1
    result["routes"] = {
        str(cat): {route: n for (c, route), n in sorted(routes.items()) if c == cat}
        for cat in sorted({c for c, _ in routes})
    }
    return result


def markdown(result: dict[str, Any], command: str) -> str:
    systems = result["systems"]
    names = [n for n in ("default", "hybrid", "adaptive") if n in systems]
    cats = sorted({c for s in systems.values() for c in s["by_category"]}, key=int)
    lines = [
        "## Adaptive retrieval router",
        "",
        f"Command: `{command}`  ",
        f"{result['questions']} questions; one store; each pipeline embeds its own query "
        "(latency includes it).",
        "",
        "| pipeline | R@10 | "
        + " | ".join(f"R@10 {c} {locomo.CATEGORIES.get(int(c), '?')}" for c in cats)
        + " | p50 ms | p95 ms |",
        "|---|" + "---:|" * (1 + len(cats) + 2),
    ]
    for name in names:
        s = systems[name]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{s['recall'][str(k)]:.1f}" for k in KS)
            + " | "
            + " | ".join(f"{s['by_category'][c]['10']:.1f}" for c in cats)
            + f" | {s['search_ms']['p50']} | {s['search_ms']['p95']} |"
        )
    lines += [
        "",
        "Routes chosen, by LoCoMo category:",
        "",
        "| category | none | single | iterative |",
    ]
    lines.append("|---|---:|---:|---:|")
    for cat, counts in result["routes"].items():
        label = locomo.CATEGORIES.get(int(cat), "?")
        lines.append(
            f"| {cat} {label} | {counts.get('none', 0)} | {counts.get('single', 0)} | "
            f"{counts.get('iterative', 0)} |"
        )
    return "\n".join(lines)
