"""`engram bench answer`: questions answered from memories, per route, on a memory-QA set
the project generates (invented people and facts inside conversational filler; no model
can know them, and no LoCoMo text).

Every question runs through `Memory.answer` on one home: the text route (a full prefill of
the prompt); the kv route reading a stored whole-prompt block (exact: after one pass that
builds them); and the kv route with per-memory blocks composed at several recompute shares
(engram.activation.compose), after one pass that builds the blocks. Scores: exact match
(the gold answer appears in the reply), agreement with the text route's reply, and time to
first token, median over questions; speed-ups are ratios within this one run.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engram.bench.devset.render import small_talk
from engram.bench.devset.vocab import Namer
from engram.bench.parametric_data import generate_facts
from engram.errors import ValidationError

OWNER = "bench"
FULL = {"questions": 24, "memories": 24, "filler": 24, "shares": (0.0, 0.15, 0.3)}
QUICK = {"questions": 4, "memories": 8, "filler": 8, "shares": (0.0, 0.15)}


@dataclass(frozen=True)
class QAItem:
    question: str
    answer: str


@dataclass(frozen=True)
class AnswerBenchConfig:
    model: str
    questions: int
    memories: int  # per prompt (answer.k)
    filler: int  # memories without a fact
    shares: tuple[float, ...]
    kv_method: str
    max_tokens: int = 12
    seed: int = 0

    def check(self) -> None:
        if self.questions < 1 or self.memories < 1 or self.filler < 0:
            raise ValidationError("questions and memories must be >= 1, filler >= 0")
        if any(not 0 <= s <= 1 for s in self.shares):
            raise ValidationError(f"recompute shares must be within [0, 1], got {self.shares}")


def qa_set(facts: int, filler: int, seed: int = 0) -> tuple[list[str], list[QAItem]]:
    """(memories to store, questions): each fact sits between two lines of small talk, as
    it would in a chat turn; `filler` memories are small talk only."""
    rng = random.Random(seed)
    namer = Namer(rng)
    memories, items = [], []
    for fact in generate_facts(facts, seed=seed, prefix="qa"):
        memories.append(f"{small_talk(rng, namer)} {fact.statement} {small_talk(rng, namer)}")
        items.append(QAItem(str(fact.question), fact.answer))
    for _ in range(filler):
        memories.append(f"{small_talk(rng, namer)} {small_talk(rng, namer)}")
    rng.shuffle(memories)
    return memories, items


def _row(
    name: str, results: list[Any], items: list[QAItem], text: list[Any] | None
) -> dict[str, Any]:
    pairs = zip(results, items, strict=True)
    right = [item.answer.lower() in r.answer.lower() for r, item in pairs]
    row: dict[str, Any] = {
        "route": name,
        "accuracy": sum(right) / len(right),
        "ttft_ms": statistics.median(r.timings.ttft_ms for r in results),
        "context_ms": statistics.median(
            (r.timings.prefill_ms or 0.0) + r.timings.kv_ms for r in results
        ),
        "prompt_tokens": statistics.median(r.prompt_tokens or 0 for r in results),
    }
    if text is not None:
        same = [r.answer.strip() == t.answer.strip() for r, t in zip(results, text, strict=True)]
        row["agreement"] = sum(same) / len(same)
    if results[0].kv is not None:
        row["recomputed_tokens"] = statistics.median(r.kv.recomputed_tokens for r in results)
        row["composed"] = statistics.median(r.kv.composed for r in results)
    return row


def _ask(m: Any, items: list[QAItem], route: str, label: str) -> list[Any]:
    """Every question through `m.answer`, with a progress line each on stderr."""
    out = []
    for n, item in enumerate(items, 1):
        out.append(m.answer(item.question, user_id=OWNER, route=route))
        r = out[-1]
        print(f"  {label} {n}/{len(items)}: ttft {r.timings.ttft_ms:.0f} ms", file=sys.stderr)
    return out


def _memory(home: Path, config: AnswerBenchConfig, **kv: Any) -> Any:
    from engram.memory import Memory

    answer = {
        "model": config.model,
        "k": config.memories,
        "max_tokens": config.max_tokens,
        "max_context_tokens": 8192,
    }
    return Memory(home=home, answer=answer, kv={"method": config.kv_method, **kv})


def run(config: AnswerBenchConfig) -> dict[str, Any]:
    config.check()
    memories, items = qa_set(config.questions, config.filler, config.seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="engram-bench-answer-") as tmp:
        home = Path(tmp)
        with _memory(home, config) as m:
            for memory in memories:
                m.add(memory, user_id=OWNER)
            text = _ask(m, items, "text", "text")
            rows.append(_row("text (full prefill)", text, items, None))
            _ask(m, items, "kv", "kv, building whole-prompt blocks")
            whole = _ask(m, items, "kv", "kv, whole-prompt block")
            rows.append(_row("kv, whole-prompt block stored", whole, items, text))
        with _memory(home, config, compose=True) as m:
            built = _ask(m, items, "kv", "kv, building per-memory blocks")
            rows.append(_row("kv composed, blocks built now", built, items, text))
        for share in config.shares:
            with _memory(home, config, compose=True, recompute=share) as m:
                kv = _ask(m, items, "kv", f"kv composed {share:.0%}")
            rows.append(_row(f"kv composed, {share:.0%} recomputed", kv, items, text))
    base = rows[0]["ttft_ms"]
    for row in rows:
        row["ttft_speedup"] = base / row["ttft_ms"] if row["ttft_ms"] else None
    return {"config": asdict(config), "rows": rows, "goals": goals(rows)}


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Composed blocks: TTFT ≥ 5× faster than a full prefill at ≥ 95 % of its accuracy; the
    kv route agrees with the text route on ≥ 95 % of the answers, faster."""
    text = rows[0]
    whole = next(r for r in rows if r["route"].startswith("kv, whole-prompt"))
    composed = [r for r in rows if r["route"].startswith("kv composed,") and "%" in r["route"]]
    best = max(
        composed,
        key=lambda r: (r["accuracy"] >= 0.95 * text["accuracy"], r["ttft_speedup"] or 0),
    )
    return {
        "best": best["route"],
        "ttft_speedup": best["ttft_speedup"],
        "accuracy_ratio": best["accuracy"] / text["accuracy"] if text["accuracy"] else None,
        "agreement": best.get("agreement"),
        "met": bool(
            (best["ttft_speedup"] or 0) >= 5 and best["accuracy"] >= 0.95 * text["accuracy"]
        ),
        "kv_agreement": whole.get("agreement"),
        "kv_speedup": whole["ttft_speedup"],
        "kv_met": bool((whole.get("agreement") or 0) >= 0.95 and (whole["ttft_speedup"] or 0) > 1),
    }


def markdown(result: dict[str, Any], command: str) -> str:
    c = result["config"]
    lines = [
        "## Answers from memory, per route (generated memory QA)",
        "",
        f"Command: `{command}`",
        "",
        f"Model `{Path(c['model']).name}`, {c['questions']} questions, {c['memories']} "
        f"memories per prompt (of {c['questions'] + c['filler']} stored), KV method "
        f"`{c['kv_method']}`, "
        f"{c['max_tokens']} answer tokens, seed {c['seed']}.",
        "",
        "| route | exact match | agrees with text | TTFT ms | context ms | TTFT speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        agree = f"{r['agreement']:.0%}" if "agreement" in r else "—"
        lines.append(
            f"| {r['route']} | {r['accuracy']:.0%} | {agree} | {r['ttft_ms']:.0f} | "
            f"{r['context_ms']:.0f} | {r['ttft_speedup']:.2f}× |"
        )
    g = result["goals"]
    ratio = "n/a" if g["accuracy_ratio"] is None else f"{g['accuracy_ratio']:.2f}"
    lines += [
        "",
        f"Best composed row: {g['best']}: {g['ttft_speedup']:.2f}× faster to the first token, "
        f"accuracy ratio {ratio}; goal (≥ 5× at ≥ 95 % of the text route's accuracy) "
        f"{'met' if g['met'] else 'not met'}. Whole-prompt block: agrees with the text route "
        f"on {g['kv_agreement']:.0%}, {g['kv_speedup']:.2f}× faster; goal (≥ 95 % agreement, "
        f"faster) {'met' if g['kv_met'] else 'not met'}.",
    ]
    return "\n".join(lines)
