"""`engram bench feedback`: does learning from use help on questions it never saw?

Protocol (issue 5): one MemCube per conversation; its questions with evidence are split
alternately — even positions give feedback (the evidence turns reported as "cited", in
question order, one report per question), odd positions are held out. R@k on the held-out
half is measured before any feedback and after all of it, with the default pipeline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engram.bench.locomo import CATEGORIES, SystemScores, ranked_turns
from engram.bench.report import bench_memory
from engram.importers import locomo_requests
from engram.importers.locomo import Conversation, Question, read_locomo
from engram.memory import Memory

KS = (1, 5, 10, 25)


def _split(conv: Conversation) -> tuple[list[Question], list[Question]]:
    asked = [q for q in conv.questions if q.evidence]
    return asked[0::2], asked[1::2]


def _score(memory: Memory, convs: list[Conversation], ks: tuple[int, ...]) -> SystemScores:
    scores = SystemScores(list(ks))
    for conv in convs:
        for q in _split(conv)[1]:
            t0 = time.perf_counter()
            hits = memory.search(q.question, user_id=conv.sample_id, k=max(ks))
            ms = (time.perf_counter() - t0) * 1000
            scores.add(ranked_turns(hits, max(ks)), q.evidence, q.category, ms)
    return scores


def _give_feedback(memory: Memory, conv: Conversation) -> tuple[int, float, dict[str, float]]:
    ids = {
        item.provenance.source_id: item.id
        for item in memory.iter_all(user_id=conv.sample_id)
        if item.provenance.source_id
    }
    reports, spent, weights = 0, 0.0, {}
    for q in _split(conv)[0]:
        cited = [ids[e] for e in dict.fromkeys(q.evidence) if e in ids]
        if not cited:
            continue
        t0 = time.perf_counter()
        weights = memory.feedback(q.question, cited=cited, user_id=conv.sample_id).weights
        spent += time.perf_counter() - t0
        reports += 1
    return reports, spent, weights


def run(data: Path, convs: list[int] | None = None) -> dict[str, Any]:
    conversations = read_locomo(data)
    if convs:
        conversations = [conversations[i] for i in convs]
    with bench_memory(max_k=1000) as memory:
        for conv in conversations:
            memory.add_batch(locomo_requests(conv))
        before = _score(memory, conversations, KS).summary(0.0)
        reports, spent = 0, 0.0
        weights: dict[str, dict[str, float]] = {}
        for conv in conversations:
            n, s, weights[conv.sample_id] = _give_feedback(memory, conv)
            reports, spent = reports + n, spent + s
        after = _score(memory, conversations, KS).summary(0.0)
    held_out = sum(len(_split(c)[1]) for c in conversations)
    return {
        "data": str(data),
        "config": {"convs": convs, "split": "alternate questions", "ks": list(KS)},
        "questions_held_out": held_out,
        "feedback_reports": reports,
        "feedback_ms_per_report": round(1000 * spent / max(reports, 1), 2),
        "recall_before": {k: before["recall"][k] for k in ("5", "10")},
        "recall_after": {k: after["recall"][k] for k in ("5", "10")},
        "before": before,
        "after": after,
        "weights": weights,
    }


def markdown(result: dict[str, Any], command: str) -> str:
    before, after = result["before"], result["after"]
    ks = [str(k) for k in result["config"]["ks"]]
    lines = [
        "## Learning from feedback (held-out questions)",
        "",
        f"Command: `{command}`  ",
        f"Data {Path(result['data']).name}: feedback (evidence turns as cited) on alternate "
        f"questions of each conversation ({result['feedback_reports']} reports, "
        f"{result['feedback_ms_per_report']} ms each), recall measured on the other "
        f"{result['questions_held_out']} questions before and after.",
        "",
        "| | " + " | ".join(f"R@{k}" for k in ks) + " | MRR | p50 ms |",
        "|---|" + "---:|" * (len(ks) + 2),
    ]
    for label, s in (("before feedback", before), ("after feedback", after)):
        lines.append(
            f"| {label} | "
            + " | ".join(f"{s['recall'][k]:.1f}" for k in ks)
            + f" | {s['mrr']:.3f} | {s['search_ms']['p50']} |"
        )
    cats = sorted(set(before["by_category"]) & set(after["by_category"]), key=int)
    lines += ["", "Per category, R@10 before → after:", ""]
    lines.append("| " + " | ".join(f"{c} {CATEGORIES.get(int(c), '?')}" for c in cats) + " |")
    lines.append("|" + "---:|" * len(cats))
    lines.append(
        "| "
        + " | ".join(
            f"{before['by_category'][c]['10']:.1f} → {after['by_category'][c]['10']:.1f}"
            for c in cats
        )
        + " |"
    )
    return "\n".join(lines)
