"""`engram bench locomo --cv`: the default pipeline's weights chosen by leave-conversations-
out cross-validation, reported beside the shipped (in-sample) weights.

The hybrid score is a weighted sum of per-part signals (engram.text.retrieval.hybrid), so
each question's signals are computed once, as a (memories x parts) matrix on the
conversation's cube, and any weight vector is scored from those matrices without running
the pipeline again. For each fold (conversations held out), weights are tuned on the other
conversations by coordinate ascent over a grid, starting from the shipped ones, and
recall is measured on the held-out conversations only. The cross-validated numbers are
the held-out recalls pooled over all folds: no question is scored with weights chosen on
its own conversation. A part's cross-validated contribution is the pooled recall lost
when the part is removed and the others are re-tuned without it.

Feedback is off in a benchmark store, so the feedback part is left out (it is zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engram.bench.locomo import ingest
from engram.bench.report import bench_memory
from engram.importers.locomo import Conversation, read_locomo
from engram.scope import Scope
from engram.store.base import MemoryFilter
from engram.text.retrieval.base import QueryContext
from engram.text.retrieval.hybrid import HYBRID_PARTS
from engram.text.retrieval.scorer import zscore

GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
KS = (5, 10)
DEPTH = 50


@dataclass
class ConvSignals:
    """One conversation's questions: their part signals and where their evidence is."""

    index: int
    calibrated: np.ndarray  # (questions, memories, parts): 0..1 parts as they are, else 0
    standard: np.ndarray  # (questions, memories, parts): z-scored parts, NaN where undefined
    gold: np.ndarray  # (questions, memories) bool: the memory is one of the question's turns
    n_gold: np.ndarray  # (questions,) evidence ids per question (unresolvable ones count)

    def scores(self, w: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """WeightedSum's score for weights `w`: standard parts undefined for a memory are
        left out for it and its other standard weights scaled up to the same total."""
        wc = np.where(mask, w, 0.0)
        ws = np.where(~mask, w, 0.0)
        defined = ~np.isnan(self.standard)
        standard = np.nan_to_num(self.standard) @ ws
        used = defined @ ws
        scale = np.where(used > 0, ws.sum() / np.maximum(used, 1e-12), 0.0)
        return np.asarray(self.calibrated @ wc + standard * scale)

    def hits(self, w: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(questions, len(KS)) evidence found in the top k, for each k."""
        order = np.argsort(-self.scores(w, mask), axis=1, kind="stable")[:, :DEPTH]
        found = np.take_along_axis(self.gold, order, axis=1)
        return np.stack([found[:, :k].sum(axis=1) for k in KS], axis=1)


def part_names() -> list[str]:
    return [name for name, (scorer, _) in HYBRID_PARTS.items() if not scorer.learns_from_feedback]


def shipped_weights() -> np.ndarray:
    return np.asarray([HYBRID_PARTS[name][1] for name in part_names()], dtype=np.float64)


def calibrated_mask() -> np.ndarray:
    return np.asarray([HYBRID_PARTS[name][0].calibrated for name in part_names()])


def signals(memory: Any, conv: Conversation, index: int) -> ConvSignals:
    """Every question's part signals on the conversation's cube."""
    cube = memory.cube(Scope.of(user_id=conv.sample_id))
    assert cube is not None  # ingested
    snapshot = memory.store.snapshot(cube.id)
    items = memory.store.by_keys(cube.id, snapshot.keys.tolist())
    turns = np.asarray([items[int(k)].provenance.source_id or "" for k in snapshot.keys])
    parts = [HYBRID_PARTS[name][0] for name in part_names()]
    questions = [q for q in conv.questions if q.evidence]
    shape = (len(questions), len(snapshot), len(parts))
    calibrated, standard = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    gold = np.zeros(shape[:2], bool)
    for qi, q in enumerate(questions):
        ctx = QueryContext(
            memory.store, cube.id, q.question, MemoryFilter(), cube.embedder.embed_one
        )
        ctx._snapshot = snapshot  # one snapshot for every question of the conversation
        for pi, scorer in enumerate(parts):
            values = scorer(ctx)
            if scorer.calibrated:
                calibrated[qi, :, pi] = np.nan_to_num(values)
            else:
                standard[qi, :, pi] = zscore(values)
        gold[qi] = np.isin(turns, q.evidence)
    n_gold = np.asarray([len(set(q.evidence)) for q in questions], dtype=np.float64)
    return ConvSignals(index, calibrated, standard, gold, n_gold)


def recall(convs: Sequence[ConvSignals], w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean recall@k over the questions of `convs`, for each k in KS (as fractions)."""
    per_q = np.concatenate([c.hits(w, mask) / c.n_gold[:, None] for c in convs])
    return np.asarray(per_q.mean(axis=0))


def objective(values: np.ndarray) -> float:
    return float(values.mean())  # R@5 and R@10 alike


def tune(
    convs: Sequence[ConvSignals], start: np.ndarray, mask: np.ndarray, frozen: Sequence[int] = ()
) -> np.ndarray:
    """Coordinate ascent over GRID from `start`; parts in `frozen` keep their weight."""
    w = start.copy()
    best = objective(recall(convs, w, mask))
    for _ in range(3):
        improved = False
        for j in range(len(w)):
            if j in frozen:
                continue
            for value in GRID:
                if value == w[j]:
                    continue
                trial = w.copy()
                trial[j] = value
                if not np.any(trial):
                    continue
                score = objective(recall(convs, trial, mask))
                if score > best + 1e-9:
                    best, w, improved = score, trial, True
        if not improved:
            break
    return w


def folds_of(n: int, folds: int) -> list[list[int]]:
    """Contiguous groups of conversation positions, as even as possible."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be between 2 and the number of conversations ({n})")
    bounds = np.linspace(0, n, folds + 1).round().astype(int)
    return [list(range(bounds[i], bounds[i + 1])) for i in range(folds)]


def cross_validate(convs: list[ConvSignals], folds: int) -> dict[str, Any]:
    names, mask, shipped = part_names(), calibrated_mask(), shipped_weights()
    held_hits: dict[str, list[np.ndarray]] = {"cv": [], **{n: [] for n in names}}
    per_fold = []
    for group in folds_of(len(convs), folds):
        test = [convs[i] for i in group]
        train = [c for i, c in enumerate(convs) if i not in group]
        w = tune(train, shipped, mask)
        held = np.concatenate([c.hits(w, mask) / c.n_gold[:, None] for c in test])
        held_hits["cv"].append(held)
        per_fold.append(
            {
                "held_out": [c.index for c in test],
                "weights": dict(zip(names, w.tolist(), strict=True)),
                "recall_tuned": _pct(held.mean(axis=0)),
                "recall_shipped": _pct(recall(test, shipped, mask)),
            }
        )
        for j, name in enumerate(names):  # the part removed, the others re-tuned
            start = w.copy()
            start[j] = 0.0
            wj = tune(train, start, mask, frozen=[j])
            held_hits[name].append(
                np.concatenate([c.hits(wj, mask) / c.n_gold[:, None] for c in test])
            )
    pooled = {name: _pct(np.concatenate(h).mean(axis=0)) for name, h in held_hits.items()}
    return {
        "folds": per_fold,
        "in_sample": _pct(recall(convs, shipped, mask)),
        "cv": pooled.pop("cv"),
        "cv_without": pooled,
    }


def _pct(values: np.ndarray) -> dict[str, float]:
    return {str(k): round(100.0 * float(v), 2) for k, v in zip(KS, values, strict=True)}


def run(data: Path, folds: int = 5, convs: list[int] | None = None) -> dict[str, Any]:
    conversations = read_locomo(data)
    indexes = convs or list(range(len(conversations)))
    chosen = [conversations[i] for i in indexes]
    folds_of(len(chosen), folds)  # a bad --folds fails before the ingest
    with bench_memory(max_k=1000) as memory:
        ingest(memory, chosen)
        signals_ = [signals(memory, c, i) for c, i in zip(chosen, indexes, strict=True)]
        embedder = memory.embedder.name
    result = cross_validate(signals_, folds)
    return {
        "data": str(data),
        "questions": int(sum(len(s.n_gold) for s in signals_)),
        "config": {
            "folds": folds,
            "convs": convs,
            "ks": list(KS),
            "grid": list(GRID),
            "embedder": embedder,
            "parts": part_names(),
            "shipped_weights": dict(zip(part_names(), shipped_weights().tolist(), strict=True)),
        },
        **result,
    }


def markdown(result: dict[str, Any], command: str) -> str:
    cfg = result["config"]
    k5, k10 = "5", "10"
    lines = [
        "## LoCoMo, cross-validated (leave conversations out)",
        "",
        f"Command: `{command}`  ",
        f"{result['questions']} questions; {cfg['folds']} folds of whole conversations; "
        f"weights tuned on the other folds by coordinate ascent over {cfg['grid']}, "
        f"from the shipped weights; embedder {cfg['embedder']}.",
        "",
        "| weights | R@5 | R@10 |",
        "|---|---:|---:|",
        f"| shipped (chosen on all of LoCoMo: in-sample) | {result['in_sample'][k5]:.1f} | "
        f"{result['in_sample'][k10]:.1f} |",
        f"| tuned per fold, scored on held-out conversations | {result['cv'][k5]:.1f} | "
        f"{result['cv'][k10]:.1f} |",
        "",
        "Per fold (held-out conversations):",
        "",
        "| held out | shipped R@10 | tuned R@10 | tuned weights |",
        "|---|---:|---:|---|",
    ]
    for fold in result["folds"]:
        weights = ", ".join(f"{n} {w:g}" for n, w in fold["weights"].items())
        lines.append(
            f"| {fold['held_out']} | {fold['recall_shipped'][k10]:.1f} | "
            f"{fold['recall_tuned'][k10]:.1f} | {weights} |"
        )
    lines += [
        "",
        "Cross-validated contribution of each part (removed, the others re-tuned per fold):",
        "",
        "| without | CV R@5 | CV R@10 | Δ R@10 |",
        "|---|---:|---:|---:|",
    ]
    for name, values in result["cv_without"].items():
        delta = values[k10] - result["cv"][k10]
        lines.append(f"| {name} | {values[k5]:.1f} | {values[k10]:.1f} | {delta:+.1f} |")
    return "\n".join(lines)
