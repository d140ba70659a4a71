"""`engram bench parametric`: facts taught in sequential batches; recall after each batch,
BWT and forgetting per safeguard, against naive sequential LoRA, one joint LoRA (upper
bound) and text retrieval from the same memories."""

from __future__ import annotations

import copy
import math
import multiprocessing
import random
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engram.bench.parametric_data import batches, generate_facts
from engram.config import LoRAConfig
from engram.parametric.evaluation import AccuracyMatrix, perplexity, recall, recognition_auc
from engram.parametric.examples import Fact, examples_for
from engram.parametric.general_text import GENERAL_TEXTS, docstring_texts
from engram.parametric.learner import ContinualLearner
from engram.parametric.safeguards import build_safeguards

JOINT = "joint"  # the upper bound: one LoRA on every batch at once
# joint LoRAs (all batches at once, in one run, so with one warm-up + cosine decay: the
# lr-rewarm schedule) and their safeguards; "joint" is the upper bound. The "-matched" ones
# train (2B-1)/B times the epochs: the optimizer steps replay (ratio 1) takes over B batches.
JOINTS: dict[str, tuple[list[str], bool]] = {
    JOINT: (["lr-rewarm"], False),
    "joint+distill": (["lr-rewarm", "distill"], False),
    "joint-matched": (["lr-rewarm"], True),
    "joint+distill-matched": (["lr-rewarm", "distill"], True),
}

# name -> (safeguards, per-safeguard options); "naive" is sequential LoRA with none.
METHODS: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {
    "naive": ([], {}),
    "replay": (["replay"], {}),
    "gere": (["gere"], {}),
    "olora": (["olora"], {}),
    "osf": (["osf"], {}),
    "ema": (["ema"], {}),
    "lr-rewarm": (["lr-rewarm"], {}),
    "spaced": (["spaced"], {}),
    "distill": (["distill"], {}),
    # GeRe held tight: narrow bands (0.1 std) and a 10x heavier margin loss
    "replay+gere-strict+lr-rewarm": (
        ["replay", "gere", "lr-rewarm"],
        {"gere": {"threshold": 0.1, "margin_weight": 10.0}},
    ),
    "replay+distill": (["replay", "distill"], {}),
    "replay+distill+lr-rewarm": (["replay", "distill", "lr-rewarm"], {}),
}


@dataclass(frozen=True)
class BenchConfig:
    batches: int = 5
    facts_per_batch: int = 100
    epochs: int = 30
    rank: int = 16
    learning_rate: float = 3e-3
    batch_size: int = 16
    seed: int = 0
    methods: tuple[str, ...] = (*list(JOINTS)[1:], *METHODS)
    eval_texts: int = 64
    replay_texts: int = 512

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(batches=3, facts_per_batch=6, eval_texts=16, replay_texts=32)


@dataclass
class MethodResult:
    name: str
    matrix: AccuracyMatrix
    train_s: list[float] = field(default_factory=list)
    adapter_bytes: int | None = 0
    ppl_drift_pct: float = 0.0
    qa_recall: float | None = None
    recognition_auc: float | None = None
    curve: list[float] = field(default_factory=list)


def load_model(spec: str | None, facts: Sequence[Fact]) -> tuple[torch.nn.Module, Any, str]:
    """The project LM (None), a checkpoint path, or 'tiny': a random tiny Llama with a BPE
    tokenizer fitted to the facts (for CI smoke runs when no checkpoint is at hand)."""
    if spec == "tiny":
        from engram.parametric.tiny import tiny_model, tiny_tokenizer

        texts = [e.prompt + e.completion for e in examples_for(facts)] + list(GENERAL_TEXTS)
        tokenizer = tiny_tokenizer(texts)
        return tiny_model(tokenizer), tokenizer, "tiny (random init)"
    from engram.lm import load_model as load

    model, tokenizer = load(spec)
    return model, tokenizer, spec or "engram-lm (packaged)"


def general_texts(n_eval: int, n_replay: int) -> tuple[list[str], list[str]]:
    """Two disjoint sets of standard-library docstrings (general text the LM was trained
    on), cut to 40 words each: `n_eval` spread evenly over the modules to measure
    perplexity drift on, and up to `n_replay` others, shuffled, that GeRe replays and
    distillation draws from."""
    docs = docstring_texts(40, limit_chars=300_000)
    step = max(1, len(docs) // n_eval)
    held = set(range(0, len(docs), step)[:n_eval])
    rest = [d for i, d in enumerate(docs) if i not in held]
    random.Random(0).shuffle(rest)
    return [docs[i] for i in sorted(held)], rest[:n_replay]


def _row(model: torch.nn.Module, tokenizer: Any, data: list[list[Fact]]) -> list[float]:
    return [100 * recall(model, tokenizer, b) for b in data]


@dataclass
class Setup:
    """What every method of one run shares."""

    model: torch.nn.Module
    tokenizer: Any
    data: list[list[Fact]]
    untaught: list[Fact]
    settings: LoRAConfig
    eval_texts: list[str]
    replay_texts: list[str]
    initial: list[float]
    base_ppl: float

    def learner(self, safeguards: list[Any], epochs: int | None = None) -> ContinualLearner:
        """A learner on a pristine copy of the base model."""
        settings = self.settings
        if epochs is not None:
            settings = settings.model_copy(update={"epochs": epochs})
        return ContinualLearner(
            copy.deepcopy(self.model), self.tokenizer, settings, safeguards, self.replay_texts
        )


def run_method(name: str, setup: Setup) -> MethodResult:
    names, options = METHODS[name]
    learner = setup.learner(build_safeguards(names, options))
    result = MethodResult(name, AccuracyMatrix(initial=list(setup.initial)))
    for i, batch in enumerate(setup.data):
        report = learner.learn(batch)
        result.train_s.append(report.train_s)
        row = _row(learner.model, setup.tokenizer, setup.data)
        result.matrix.add_row(row)
        result.curve.append(sum(row[: i + 1]) / (i + 1))
    _finish(result, learner, setup)
    return result


def run_joint(name: str, setup: Setup) -> MethodResult:
    """One LoRA trained on every batch at once; `JOINT` is the upper bound."""
    safeguards, matched = JOINTS[name]
    n = len(setup.data)
    epochs = round(setup.settings.epochs * (2 * n - 1) / n) if matched else None
    learner = setup.learner(build_safeguards(safeguards), epochs)
    report = learner.learn([f for b in setup.data for f in b])
    result = MethodResult(name, AccuracyMatrix(initial=list(setup.initial)))
    result.train_s.append(report.train_s)
    row = _row(learner.model, setup.tokenizer, setup.data)
    for _ in setup.data:  # it has seen every batch: averages run over all of them
        result.matrix.add_row(row)
    result.curve = [sum(row) / len(row)] * len(setup.data)
    _finish(result, learner, setup)
    return result


def _finish(result: MethodResult, learner: ContinualLearner, setup: Setup) -> None:
    model, tokenizer = learner.model, setup.tokenizer
    taught = [f for b in setup.data for f in b]
    ppl = perplexity(model, tokenizer, setup.eval_texts)
    result.ppl_drift_pct = 100 * (ppl / setup.base_ppl - 1)
    result.qa_recall = 100 * recall(model, tokenizer, taught, form="question")
    result.recognition_auc = recognition_auc(model, tokenizer, taught, setup.untaught)
    _, state = learner.export()
    result.adapter_bytes = sum(t.numel() * t.element_size() for t in state.values())


def run_retrieval(data: list[list[Fact]], initial: list[float]) -> MethodResult:
    """Text retrieval from the same memories: the statement is stored; a fact counts as
    recalled when the top hit for its question is its own statement."""
    from engram.bench.report import bench_memory

    result = MethodResult("retrieval", AccuracyMatrix(initial=[0.0] * len(data)))
    with bench_memory() as memory:
        ids: dict[str, str] = {}
        for i, batch in enumerate(data):
            started = time.perf_counter()
            for fact in batch:
                item = memory.add(fact.statement, user_id="bench", memory_type="fact")[0]
                ids[item.id] = fact.memory_id
            result.train_s.append(time.perf_counter() - started)
            row = []
            for j, facts in enumerate(data):
                if j > i:
                    row.append(0.0)
                    continue
                hits = [memory.search(f.question or f.prompt, user_id="bench", k=1) for f in facts]
                found = sum(
                    bool(h) and ids.get(h[0].id) == f.memory_id
                    for h, f in zip(hits, facts, strict=True)
                )
                row.append(100 * found / len(facts))
            result.matrix.add_row(row)
            result.curve.append(sum(row[: i + 1]) / (i + 1))
    result.adapter_bytes = None
    return result


def make_setup(model_spec: str | None, config: BenchConfig) -> tuple[Setup, str]:
    """The data, base model and reference numbers every method of one run shares."""
    data = batches(config.batches, config.facts_per_batch, config.seed)
    untaught = generate_facts(config.facts_per_batch, config.seed + 1, prefix="u")
    all_facts = [f for b in data for f in b] + untaught
    model, tokenizer, model_name = load_model(model_spec, all_facts)
    eval_texts, replay_texts = general_texts(config.eval_texts, config.replay_texts)
    setup = Setup(
        model=model,
        tokenizer=tokenizer,
        data=data,
        untaught=untaught,
        settings=LoRAConfig(
            rank=config.rank,
            alpha=2.0 * config.rank,
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
            safeguards=[],
        ),
        eval_texts=eval_texts,
        replay_texts=replay_texts,
        initial=_row(model, tokenizer, data),
        base_ppl=perplexity(model, tokenizer, eval_texts),
    )
    return setup, model_name


_worker_setup: Setup | None = None


def _init_worker(model_spec: str | None, config: BenchConfig, base_ppl: float) -> None:
    """Each worker loads its own copy (a pickled transformers model loses its output
    hooks) and checks it is the parent's model by its perplexity."""
    global _worker_setup
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(1)
    setup, _ = make_setup(model_spec, config)
    if not math.isclose(setup.base_ppl, base_ppl, rel_tol=1e-5):
        raise RuntimeError(f"worker model differs: ppl {setup.base_ppl} vs {base_ppl}")
    _worker_setup = setup


def _run_named(name: str, setup: Setup | None = None) -> MethodResult:
    setup = setup or _worker_setup
    if setup is None:
        raise RuntimeError("bench worker used before its setup arrived")
    return run_joint(name, setup) if name in JOINTS else run_method(name, setup)


def _train_all(
    setup: Setup,
    names: list[str],
    jobs: int,
    log: Callable[[str], None] | None,
    source: tuple[str | None, BenchConfig],
) -> dict[str, MethodResult]:
    """Every named method on `setup`; with `jobs` > 1, that many worker processes train
    side by side (each on one thread), costliest methods first."""
    done: dict[str, MethodResult] = {}
    if jobs <= 1:
        for name in names:
            done[name] = _run_named(name, setup)
            if log:
                log(f"{name} done")
        return done
    order = sorted(names, key=lambda n: -_cost(n))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, context, _init_worker, (*source, setup.base_ppl)) as pool:
        futures = {pool.submit(_run_named, name): name for name in order}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if log:
                log(f"{futures[future]} done")
    return done


def _cost(name: str) -> int:
    """Rough training cost, to start the long methods first."""
    if name in JOINTS:
        safeguards, matched = JOINTS[name]
        return (3 + 2 * len(safeguards)) * (2 if matched else 1)
    safeguards = METHODS[name][0]
    return len(safeguards) + 2 * ("distill" in safeguards) + ("gere" in safeguards)


def run(
    model_spec: str | None,
    config: BenchConfig,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    warnings.filterwarnings("ignore", category=FutureWarning)
    # one thread per process: on a shared CPU, more threads wait on each other (measured
    # 4-40x slower); `jobs` processes train methods side by side instead
    torch.set_num_threads(1)
    setup, model_name = make_setup(model_spec, config)
    started = time.perf_counter()
    retrieval = run_retrieval(setup.data, setup.initial)  # first: it needs no training
    trained = _train_all(setup, [JOINT, *config.methods], jobs, log, (model_spec, config))
    joint = trained[JOINT].matrix.average_accuracy()
    results = [trained[JOINT], *(trained[n] for n in config.methods), retrieval]
    if log:
        for r in results:
            log(_line(r, joint))
    rows = [_summary(r, joint) for r in results]
    return {
        "methods": rows,
        "details": {r.name: _details(r) for r in results},
        "goals": _goals(rows),
        "config": {
            **config.__dict__,
            "methods": list(config.methods),
            "model": model_name,
            "jobs": jobs,
        },
        "base": {"recall": setup.initial, "perplexity": setup.base_ppl},
        "wall_s": time.perf_counter() - started,
    }


def _line(r: MethodResult, joint: float) -> str:
    s = _summary(r, joint)
    return (
        f"{s['name']}: recall {s['avg_recall']}% ({s['recall_vs_joint_pct']}% of joint), "
        f"BWT {s['bwt']}, ppl drift {s['ppl_drift_pct']}%, {s['train_s_per_batch']} s/batch"
    )


def _summary(r: MethodResult, joint: float) -> dict[str, Any]:
    m = r.matrix
    sequential = r.name not in JOINTS
    return {
        "name": r.name,
        "avg_recall": round(m.average_accuracy(), 2),
        "recall_vs_joint_pct": round(100 * m.average_accuracy() / joint, 1) if joint else None,
        "bwt": round(m.bwt(), 2) if sequential else None,
        "forgetting": round(m.forgetting(), 2) if sequential else None,
        "ppl_drift_pct": round(r.ppl_drift_pct, 2),
        "train_s_per_batch": round(sum(r.train_s) / len(r.train_s), 2),
        "adapter_bytes": r.adapter_bytes,
    }


def _details(r: MethodResult) -> dict[str, Any]:
    return {
        "matrix": r.matrix.to_dict(),
        "curve": r.curve,
        "qa_recall": r.qa_recall,
        "recognition_auc": r.recognition_auc,
        "train_s": r.train_s,
    }


def _goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which safeguarded methods meet all three goals of the issue."""
    met = [
        r["name"]
        for r in rows
        if r["name"] not in {*JOINTS, "naive", "retrieval"}
        and (r["recall_vs_joint_pct"] or 0) >= 90
        and r["bwt"] is not None
        and r["bwt"] >= -5
        and r["ppl_drift_pct"] <= 5
    ]
    return {
        "rule": "avg recall >= 90% of joint, BWT >= -5 points, ppl drift <= 5%",
        "met_by": met,
    }


def plot(result: dict[str, Any], matrix_png: Path, curves_png: Path) -> bool:
    """Accuracy-matrix heatmaps and per-batch recall curves; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    details = result["details"]
    names = [n for n in details if n not in JOINTS]
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        matrix = details[name]["matrix"]["rows"]
        ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("evaluated batch", fontsize=8)
        ax.set_ylabel("after batch", fontsize=8)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6, color="w")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle("recall (%) of batch j after training batch i")
    fig.tight_layout()
    matrix_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(matrix_png, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.get_cmap("tab20")  # qualitative: cmap.N (20) distinct colors, by index
    for k, (name, d) in enumerate(details.items()):
        xs = range(1, len(d["curve"]) + 1)
        ax.plot(
            xs,
            d["curve"],
            marker="os^vD"[k % 5],
            label=name,
            linestyle="--" if name in JOINTS else "-",
            color=colors(k % colors.N),
        )
    ax.set_xticks(range(1, len(next(iter(details.values()))["curve"]) + 1))
    ax.set_xlabel("batches taught")
    ax.set_ylabel("avg recall of batches so far (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(curves_png, dpi=110)
    plt.close(fig)
    return True


def markdown(result: dict[str, Any], command: str, images: tuple[str, str] | None) -> str:
    cfg = result["config"]
    lines = [
        "## Parametric memory (LoRA continual learning)",
        "",
        f"`{command}`",
        "",
        f"Model: {cfg['model']}. {cfg['batches']} sequential batches of "
        f"{cfg['facts_per_batch']} synthetic facts about invented people (each fact taught as "
        f"a statement and a Q/A pair); LoRA rank {cfg['rank']}, {cfg['epochs']} epochs per "
        f"batch, lr {cfg['learning_rate']}. Recall = greedy exact match of the answer after "
        "the last batch, averaged over all batches; BWT and forgetting in points (Avalanche "
        f"definitions); perplexity drift on {cfg['eval_texts']} held-out stdlib docstrings "
        f"(base perplexity {result['base']['perplexity']:.1f}). {cfg.get('jobs', 1)} "
        f"method(s) trained side by side, one thread each; wall time {result['wall_s']:.0f}s. "
        "'% of joint' is against joint LoRA on all batches at once, with one warm-up and "
        "cosine decay and the same epochs (the upper bound); joint+distill adds the distill "
        "safeguard; the -matched joints train (2B-1)/B times the epochs, as many steps as "
        "replay takes over B batches.",
        *_runs_note(result),
        "",
        "| method | avg recall % | % of joint | BWT | forgetting | ppl drift % "
        "| train s/batch | adapter bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["methods"]:
        lines.append(
            f"| {r['name']} | {r['avg_recall']:.1f} | {_num(r['recall_vs_joint_pct'])} "
            f"| {_num(r['bwt'])} | {_num(r['forgetting'])} | {r['ppl_drift_pct']:+.1f} "
            f"| {r['train_s_per_batch']:.1f} | {_num(r['adapter_bytes'])} |"
        )
    goals = result["goals"]
    lines += [
        "",
        f"Goal ({goals['rule']}): met by {', '.join(goals['met_by']) or 'no method'}.",
    ]
    if images:
        lines += ["", f"![accuracy matrices]({images[0]})", "", f"![recall curves]({images[1]})"]
    return "\n".join(lines)


def _runs_note(result: dict[str, Any]) -> list[str]:
    """For a merged result (`--update`): which invocation produced which rows."""
    runs = result.get("runs", [])
    if len(runs) < 2:
        return []
    parts = [
        f"`{r['command'] or 'engram bench parametric'}` ({', '.join(r['methods'])}; "
        f"{r['jobs']} job(s), {r['wall_s']:.0f}s)"
        for r in runs
    ]
    return [
        "",
        f"Rows from {len(runs)} invocations on the same facts, model, texts and settings "
        "(checked by `--update`; later rows replace earlier ones): " + "; then ".join(parts) + ".",
    ]


def _num(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if isinstance(value, float) else str(value)
