"""`engram bench scheduler`: a workload replayed over simulated days, with the scheduler,
without it, and with everything in every tier.

Each day new sessions of a LoCoMo-format conversation arrive, then questions whose
evidence has arrived are asked with a Zipf-like skew (a few questions asked often), each
search answered by the owner's text tier; the evidence among the hits is reported as cited
(the app's answer used it). At the end of each day the `scheduler` arm plans and runs its
moves (as `engram tiers run --now`), planned as of that simulated day. Per day and arm:
which tier holds what a question needs (parametric: every evidence memory learned by the
adapter; kv: a hit has a KV block; else text), KV hits and the prefill they skip (tokens,
and the time they take to recompute on the packaged LM here), text recall@k (must stay
the same), recall of the facts the adapter learned through it (and through the bare base
model, the floor), and bytes per tier. Routes are where the memories are, not answer
accuracy (docs/benchmarks.md)."""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engram.config import EmbedderConfig, load_config
from engram.embed import Embedder, build_embedder
from engram.importers import locomo_requests
from engram.importers.locomo import Conversation, Question, read_locomo
from engram.memory import Memory
from engram.scope import Scope
from engram.text.adding import AddRequest
from engram.tiers import ACTIVATION, PARAMETRIC

ARMS = ("none", "scheduler", "all")
ROUTES = ("text", "kv", "parametric")
RECALL_SAMPLE = 64  # learned facts scored per day and arm (a fixed-seed sample)


@dataclass(frozen=True)
class Workload:
    """What is replayed: which conversation, over how many days, how often asked."""

    days: int
    queries_per_day: int
    zipf: float
    k: int
    seed: int
    budget_bytes: int
    model: str = "engram-lm"  # of the kv and lora tiers in every arm
    lora_epochs: int = 8  # passes over each adapter batch (lora.epochs' default)

    def settings(self) -> dict[str, Any]:
        """The scheduler arm's settings: simulated days stand for the age rules' days."""
        return {
            "kv": {"budget_bytes": self.budget_bytes, "min_heat": 2.0},
            "adapter": {"min_age_days": 1, "min_confirmations": 2, "stable_days": 1},
        }


def arrivals(requests: Sequence[AddRequest], days: int) -> list[list[AddRequest]]:
    """Sessions spread over the first days in order (the last days bring nothing new
    when there are fewer sessions than days)."""
    per_day = max(1, -(-len(requests) // days))
    return [list(requests[d * per_day : (d + 1) * per_day]) for d in range(days)]


def zipf_draws(questions: Sequence[Question], n: int, s: float, rng: random.Random) -> list[int]:
    """`n` indexes into `questions`, rank r drawn with weight 1 / r^s (rank order fixed by
    the seed, so the same questions stay popular day after day)."""
    if not questions:
        return []
    weights = [1.0 / (rank + 1) ** s for rank in range(len(questions))]
    return rng.choices(range(len(questions)), weights=weights, k=n)


def prefill_ms_per_token(memory: Memory) -> float:
    """Median prefill time per token of `kv.model` on a 128-token input."""
    import torch

    from engram.lm import load_model
    from engram.models.local import configured_checkpoint

    config = memory.config
    model, tokenizer = load_model(configured_checkpoint(config.kv.model, config))
    ids = tokenizer("memory " * 200, return_tensors="pt")["input_ids"][:, :128]
    times = []
    with torch.no_grad():
        for _ in range(5):
            started = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - started)
    return 1000.0 * sorted(times)[2] / ids.shape[1]


class Arm:
    """One arm of the run: its own home, its own Memory."""

    def __init__(self, name: str, home: Path, embedder: Embedder, work: Workload):
        self.name = name
        scheduler = work.settings() if name == "scheduler" else {}
        config = load_config(
            home=home,
            kv={"model": work.model},
            answer={"model": work.model},  # the kv route reads, and the scheduler builds, for it
            lora={"epochs": work.lora_epochs, "base_model": work.model},
            extract={"enqueue": False},  # the same text tier in every arm
            scheduler=scheduler,
        )
        self.memory = Memory(config, embedder=embedder)
        self.moves: Counter[str] = Counter()
        self._host: Any = None  # the base model the adapter recall is measured on

    def adapter_recall(self, owner: str, learned: set[str]) -> dict[str, float] | None:
        """Of (a sample of) the facts the latest adapter learned: exact-match recall
        through the adapter and through the bare base model, and how much likelier (mean
        log-probability per answer token) the adapter makes the answers; None without an
        adapter."""
        from engram.parametric.evaluation import probe, score_examples
        from engram.parametric.tier import facts_of

        m = self.memory
        if not learned:
            return None
        if self._host is None:
            from engram.parametric.cube import load_base
            from engram.parametric.host import AdapterHost

            self._host = AdapterHost(*load_base(m.config.lora.base_model, m.config))
        host = self._host
        items = sorted((i for i in m.iter_all(user_id=owner) if i.id in learned), key=_id)
        facts, _ = facts_of(random.Random(0).sample(items, min(len(items), RECALL_SAMPLE)))
        if not facts:
            return None
        name = host.load(m.lora.manifest(user_id=owner))
        probes = [probe(f) for f in facts]
        with host.using(name) as model:
            adapted = score_examples(model, host.tokenizer, probes)
        with host.using(None) as model:
            base = score_examples(model, host.tokenizer, probes)
        n = len(probes)
        return {
            "adapter_recall": round(sum(s.exact for s in adapted) / n, 3),
            "base_recall": round(sum(s.exact for s in base) / n, 3),
            "logp_gain": round(
                sum(a.mean_logprob - b.mean_logprob for a, b in zip(adapted, base, strict=True))
                / n,
                3,
            ),
        }

    def end_of_day(self, owner: str, at: datetime) -> None:
        m = self.memory
        if self.name == "scheduler":
            plan = m.schedule(owner, dry_run=False, at=at)
            self.moves.update(move.action for move in plan.moves)
            m.run_jobs()
        elif self.name == "all":
            self._everything(owner)

    def _everything(self, owner: str) -> None:
        """A KV block for every memory not holding one, and the adapter taught the rest."""
        from engram.answer.routes.kv import memory_block

        m = self.memory
        cube = m.cube(Scope.of(user_id=owner))
        if cube is None:
            return
        held = {s.memory_id for s in m.store.artifacts(ACTIVATION, cube.owner)}
        todo = [item for item in m.iter_all(user_id=owner) if item.id not in held]
        tier = cube.tiers[ACTIVATION]
        for item in todo:  # the blocks the kv route composes prompts from
            memory_block(tier, m.answer_model(), item, m.config.kv.method)  # type: ignore[arg-type]
            self.moves["build"] += 1
        learned = {s.memory_id for s in m.store.artifacts(PARAMETRIC, cube.owner)}
        if any(item.id not in learned for item in m.iter_all(user_id=owner)):
            manifest = m.lora.train(user_id=owner)
            self.moves["learn"] += len(set(manifest.memory_ids) - learned)

    def held(self, owner: str) -> tuple[dict[str, int], set[str], dict[str, int]]:
        """Tokens of each memory's own KV block, the memories an adapter learned, and
        bytes per tier."""
        m = self.memory
        cube = m.cube(Scope.of(user_id=owner))
        assert cube is not None
        blocks = {a.key: a for a in cube.tiers[ACTIVATION].held()}
        kv: dict[str, int] = {}
        for a in blocks.values():
            if len(a.memory_ids) == 1:
                kv[a.memory_ids[0]] = int(a.detail.get("tokens") or 0)
        learned = {s.memory_id for s in m.store.artifacts(PARAMETRIC, cube.owner)}
        text = sum(len(i.memory.encode()) for i in m.iter_all(user_id=owner))
        nbytes = {
            "text": text,
            "activation": sum(int(a.detail.get("bytes") or 0) for a in blocks.values()),
            "parametric": int(cube.tiers[PARAMETRIC].stats()["bytes"]),
        }
        return kv, learned, nbytes


def _day(arm: Arm, owner: str, asked: list[Question], k: int, ms: float) -> dict[str, Any]:
    m = arm.memory
    kv, learned, nbytes = arm.held(owner)
    by_turn = {i.provenance.source_id: i.id for i in m.iter_all(user_id=owner)}
    routes: Counter[str] = Counter()
    recalls, hits_kv, hits_all, tokens = [], 0, 0, 0
    for q in asked:
        hits = m.search(q.question, user_id=owner, k=k)
        found = {h.provenance.source_id for h in hits}
        recalls.append(sum(e in found for e in q.evidence) / len(q.evidence))
        needed = [by_turn[e] for e in q.evidence if e in by_turn]
        hits_all += len(hits)
        served = [h for h in hits if h.id in kv]
        hits_kv += len(served)
        tokens += sum(kv[h.id] for h in served)
        if needed and all(i in learned for i in needed):
            routes["parametric"] += 1
        else:
            routes["kv" if served else "text"] += 1
        cited = [h.id for h in hits if h.provenance.source_id in q.evidence]
        if cited:
            m.feedback(q.question, cited=cited, user_id=owner)
    n = max(len(asked), 1)
    adapter = arm.adapter_recall(owner, learned)
    return {
        "questions": len(asked),
        "routes": {r: round(routes[r] / n, 3) for r in ROUTES},
        "kv_hit_rate": round(hits_kv / max(hits_all, 1), 3),
        "prefill_tokens_saved": tokens,
        "ttft_saved_ms": round(tokens * ms, 1),
        f"recall@{k}": round(sum(recalls) / n, 4),
        **(adapter or dict.fromkeys(("adapter_recall", "base_recall", "logp_gain"))),
        "bytes": nbytes,
    }


def run(data: Path, conv: int, work: Workload, embedder: Embedder | None = None) -> dict[str, Any]:
    """Replay the conversation's workload in every arm; results per arm and day."""
    conversations = read_locomo(data)
    if not 0 <= conv < len(conversations):
        raise IndexError(f"{data} has {len(conversations)} conversations, not index {conv}")
    c: Conversation = conversations[conv]
    owner = c.sample_id
    days = arrivals(locomo_requests(c), work.days)
    rng = random.Random(work.seed)
    order = list(c.questions)
    rng.shuffle(order)
    embedder = embedder or build_embedder(EmbedderConfig())
    start = datetime.now(UTC)
    out: dict[str, Any] = {"arms": {}, "moves": {}}
    ms = 0.0
    for name in ARMS:
        arm_rng = random.Random(work.seed)  # every arm is asked the same questions
        with tempfile.TemporaryDirectory() as home:
            arm = Arm(name, Path(home), embedder, work)
            try:
                ms = ms or prefill_ms_per_token(arm.memory)
                arrived: set[str] = set()
                per_day = []
                for d, requests in enumerate(days):
                    if requests:
                        arm.memory.add_batch(requests)
                    arrived |= {str(msg["source_id"]) for r in requests for msg in _messages(r)}
                    ready = [q for q in order if q.evidence and set(q.evidence) <= arrived]
                    draws = zipf_draws(ready, work.queries_per_day, work.zipf, arm_rng)
                    day = _day(arm, owner, [ready[i] for i in draws], work.k, ms)
                    per_day.append({"day": d, **day})
                    arm.end_of_day(owner, start + timedelta(days=d + 1))
                out["arms"][name] = per_day
                out["moves"][name] = dict(arm.moves)
            finally:
                arm.memory.close()
    out["prefill_ms_per_token"] = round(ms, 4)
    out["config"] = {"data": str(data), "conversation": conv, **work.__dict__}
    return out


def _id(item: Any) -> str:
    return str(item.id)


def _messages(request: AddRequest) -> list[dict[str, Any]]:
    messages = request.messages
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def markdown(result: dict[str, Any], command: str) -> str:
    """One row per day and arm."""
    cfg = result["config"]
    k = cfg["k"]
    lines = [
        "## Scheduler: a replayed workload over simulated days",
        "",
        f"`{command}`",
        "",
        f"{cfg['queries_per_day']} questions a day (Zipf s={cfg['zipf']}) over "
        f"{cfg['days']} days; KV budget {cfg['budget_bytes'] >> 10} KiB per owner; "
        f"model `{cfg['model']}`, prefill {result['prefill_ms_per_token']} ms/token here. "
        "Routes say which tier holds what a question needs, not answer accuracy. Adapter "
        f"recall: exact-match recall of up to {RECALL_SAMPLE} facts the adapter learned, "
        "through it (through the bare base model), and how much likelier it makes their "
        "answers (mean log-probability per answer token, adapter minus base).",
        "",
        f"| day | arm | text / kv / parametric | KV hits | prefill saved | R@{k} "
        "| adapter recall (base) | KV KiB | adapter KiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in range(cfg["days"]):
        for arm in ARMS:
            row = result["arms"][arm][d]
            r = row["routes"]
            b = row["bytes"]
            lines.append(
                f"| {d} | {arm} | {r['text']:.2f} / {r['kv']:.2f} / {r['parametric']:.2f} "
                f"| {row['kv_hit_rate']:.2f} | {row['prefill_tokens_saved']} tok, "
                f"{row['ttft_saved_ms']:.0f} ms | {row[f'recall@{k}']:.3f} "
                f"| {_adapter(row)} | {b['activation'] >> 10} | {b['parametric'] >> 10} |"
            )
    moves = ", ".join(
        f"{arm}: " + (" ".join(f"{a} {n}" for a, n in sorted(result["moves"][arm].items())) or "-")
        for arm in ARMS
    )
    lines += ["", f"Moves: {moves}."]
    return "\n".join(lines)


def _adapter(row: dict[str, Any]) -> str:
    if row.get("adapter_recall") is None:
        return "-"
    return f"{row['adapter_recall']:.2f} ({row['base_recall']:.2f}), {row['logp_gain']:+.2f} log-p"


def plot(result: dict[str, Any], path: Path) -> bool:
    """Per day and arm: the share of questions served beyond text, and KV + adapter bytes;
    False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for arm in ARMS:
        rows = result["arms"][arm]
        days = [r["day"] for r in rows]
        left.plot(days, [1 - r["routes"]["text"] for r in rows], marker="o", label=arm)
        held = [(r["bytes"]["activation"] + r["bytes"]["parametric"]) / 1024 for r in rows]
        right.plot(days, held, marker="o", label=arm)
    for ax in (left, right):
        ax.set_xlabel("simulated day")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.set_ylabel("share held by a KV block or the adapter")
    right.set_ylabel("KV + adapter KiB (every adapter version)")
    left.legend()
    fig.suptitle("Scheduler vs none vs everything in every tier")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
