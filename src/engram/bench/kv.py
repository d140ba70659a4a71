"""`engram bench kv`: how small stored KV caches get, what it costs in fidelity, and how
much faster a reused cache reaches the first token than recomputing the prefix.

Fidelity: a prefix of generated dialogue/fact text is cached by each method; the text that
follows is scored with the compressed cache and with the full one (perplexity, next-token
KL). A copy probe puts key/value facts in the cached block and asks about one after it.
transformers' own QuantizedCache (quanto backend) runs side by side at 2 and 4 bits.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engram.activation import (
    KVStore,
    build_kv,
    continuation_logits,
    describe,
    model_fingerprint,
    parse_method,
)
from engram.activation.block import KVBlock
from engram.activation.build import cache_kwarg

FULL = "none"
# (label, spec); specs use the registry syntax of `engram kv build --method`.
QUICK_METHODS = [
    ("fp16", "fp16"),
    ("kivi 4-bit", "kivi:bits=4,group=32,residual=32"),
    ("kivi 2-bit", "kivi:bits=2,group=32,residual=32"),
    ("kivi 2-bit g64", "kivi:bits=2,group=64,residual=32"),
    ("rotatekv 2-bit", "rotatekv:bits=2,group=32,residual=32,sinks=4"),
    ("streamingllm 50%", "streamingllm:keep=0.5+fp16"),
    ("knorm 50%", "knorm:keep=0.5+fp16"),
    ("snapkv 50%", "snapkv:keep=0.5+fp16"),
    ("windowkv 50%", "windowkv:keep=0.5+fp16"),
    ("prefixkv 50%", "prefixkv:keep=0.5+fp16"),
    ("snapkv 50% + kivi 4-bit", "snapkv:keep=0.5+kivi:bits=4,group=32,residual=32"),
    ("snapkv 50% + kivi 2-bit", "snapkv:keep=0.5+kivi:bits=2,group=32,residual=32"),
]
FULL_METHODS = [
    *QUICK_METHODS,
    ("kivi 8-bit", "kivi:bits=8,group=32,residual=32"),
    ("rotatekv 4-bit", "rotatekv:bits=4,group=32,residual=32,sinks=4"),
    ("streamingllm 25%", "streamingllm:keep=0.25+fp16"),
    ("snapkv 25%", "snapkv:keep=0.25+fp16"),
    ("windowkv 25%", "windowkv:keep=0.25+fp16"),
    ("prefixkv 25%", "prefixkv:keep=0.25+fp16"),
    ("knorm 25%", "knorm:keep=0.25+fp16"),
    ("prefixkv 50% + kivi 4-bit", "prefixkv:keep=0.5+kivi:bits=4,group=32,residual=32"),
    ("snapkv 25% + kivi 4-bit", "snapkv:keep=0.25+kivi:bits=4,group=32,residual=32"),
    ("windowkv 50% + kivi 2-bit", "windowkv:keep=0.5+kivi:bits=2,group=32,residual=32"),
]
QUANTO_BITS = (4, 2)
# One torch thread: on a shared CPU, several threads spin against other processes and
# time 5-7x worse and erratically; recompute and reuse run under the same setting.
THREADS = 1


@dataclass(frozen=True)
class Grid:
    prefix_tokens: int
    continuation_tokens: int
    probe_items: int
    probe_facts: int
    ttft_lengths: tuple[int, ...]
    repeats: int
    methods: list[tuple[str, str]]


QUICK = Grid(1024, 256, 20, 24, (512, 2048), 5, QUICK_METHODS)
FULLRUN = Grid(2048, 512, 100, 24, (512, 1024, 2048, 4096), 5, FULL_METHODS)


# -- evaluation text --------------------------------------------------------------------


def eval_ids(tokenizer: Any, tokens: int, seed: str = "kv-bench") -> list[int]:
    """Dialogue and fact documents from a seed no training run uses, `tokens` long."""
    from engram.lm.corpus import dialogue_document, fact_document

    rng = random.Random(seed)
    docs: list[str] = []
    ids: list[int] = []
    while len(ids) < tokens:
        docs.append(dialogue_document(rng) if len(docs) % 3 else fact_document(rng))
        ids = tokenizer("\n\n".join(docs))["input_ids"]
    return list(ids[:tokens])


def probe_set(tokenizer: Any, n: int, facts: int) -> list[tuple[list[int], list[int], list[int]]]:
    """(block ids, question ids, answer ids) for the copy probe: facts cached, question
    after them, the answer to be read off greedily."""
    from engram.lm.probe import probe_items

    out = []
    for item in probe_items(n, facts=facts):
        block = tokenizer(item.context)["input_ids"]
        question = tokenizer("\n" + item.question, add_special_tokens=False)["input_ids"]
        answer = tokenizer(" " + item.answer + ".", add_special_tokens=False)["input_ids"]
        out.append((list(block), list(question), list(answer)))
    return out


def answered(logits: torch.Tensor, question: list[int], answer: list[int]) -> bool:
    """Would greedy decoding write `answer` after `question`? `logits` are those of
    question + answer read after the block; each answer token must be the argmax."""
    start = len(question) - 1
    predicted = logits[start : start + len(answer)].argmax(-1).tolist()
    return predicted == answer


# -- scoring ------------------------------------------------------------------------------


def scores(logits: torch.Tensor, reference: torch.Tensor, targets: list[int]) -> dict[str, float]:
    """Perplexity of `targets` (logits[i] predicts targets[i]) and mean KL(reference || logits)."""
    logp = logits.log_softmax(-1)
    nll = F.nll_loss(logp, torch.tensor(targets))
    kl = F.kl_div(logp, reference.log_softmax(-1), log_target=True, reduction="batchmean")
    return {"ppl": math.exp(float(nll)), "kl": float(kl)}


def quanto_cache(model: Any, bits: int, group: int) -> Any:
    from transformers import QuantizedCache

    return QuantizedCache(
        "quanto", model.config, nbits=bits, q_group_size=group, residual_length=32
    )


def quanto_bytes(cache: Any) -> int:
    """Bytes quanto actually holds: its packed codes, scales and shifts, plus the residual."""

    def size(t: Any) -> int:
        if type(t) is torch.Tensor:
            return t.numel() * t.element_size()
        names, _ = t.__tensor_flatten__()
        return sum(size(getattr(t, name)) for name in names)

    total = 0
    for layer in cache.layers:
        total += size(layer._quantized_keys) + size(layer._quantized_values)
        if layer.keys is not None and layer.keys.dim() == 4:
            total += size(layer.keys) + size(layer.values)
    return total


def quanto_logits(
    model: Any, bits: int, prefix: list[int], tail: list[int]
) -> tuple[torch.Tensor, int]:
    cache = quanto_cache(model, bits, 32)
    kwarg = cache_kwarg(model)
    with torch.no_grad():
        model(torch.tensor([prefix]), use_cache=True, **{kwarg: cache})
        stored = quanto_bytes(cache)
        out = model(torch.tensor([tail]), use_cache=True, **{kwarg: cache})
    return out.logits[0].float(), stored


def quanto_probe(model: Any, bits: int, block: list[int], tail: list[int]) -> torch.Tensor:
    return quanto_logits(model, bits, block, tail)[0]


# -- the fidelity grid --------------------------------------------------------------------


def fidelity(model: Any, tokenizer: Any, grid: Grid) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ids = eval_ids(tokenizer, grid.prefix_tokens + grid.continuation_tokens)
    prefix, tail = ids[: grid.prefix_tokens], ids[grid.prefix_tokens :]
    targets = tail[1:]
    fingerprint = model_fingerprint(model)
    full = build_kv(model, prefix, fingerprint=fingerprint)
    reference = continuation_logits(model, full, tail)[:-1]
    base = scores(reference, reference, targets)
    probes = probe_set(tokenizer, grid.probe_items, grid.probe_facts)

    def probe(run: Any) -> float:
        hits = sum(answered(run(b, q + a), q, a) for b, q, a in probes)
        return hits / len(probes)

    def ours(spec: str) -> Any:
        method = parse_method(spec)

        def run(block_ids: list[int], tail: list[int]) -> torch.Tensor:
            block = build_kv(model, block_ids, compressor=method, fingerprint=fingerprint)
            return continuation_logits(model, block, tail)

        return run

    rows = [
        _row(
            FULL,
            "full cache (" + full.dtype + ")",
            full.nbytes,
            full,
            base,
            base,
            probe(ours(FULL)),
        )
    ]
    for label, spec in grid.methods:
        block = build_kv(model, prefix, compressor=parse_method(spec), fingerprint=fingerprint)
        got = scores(continuation_logits(model, block, tail)[:-1], reference, targets)
        rows.append(
            _row(
                label,
                describe(parse_method(spec)),
                block.nbytes,
                full,
                got,
                base,
                probe(ours(spec)),
            )
        )
    for bits in QUANTO_BITS:
        logits, stored = quanto_logits(model, bits, prefix, tail)
        got = scores(logits[:-1], reference, targets)
        acc = probe(lambda b, t, bits=bits: quanto_probe(model, bits, b, t))
        rows.append(
            _row(
                f"transformers QuantizedCache quanto {bits}-bit",
                f"quanto:nbits={bits},q_group_size=32,residual_length=32",
                stored,
                full,
                got,
                base,
                acc,
            )
        )
    setup = {
        "prefix_tokens": len(prefix),
        "continuation_tokens": len(tail),
        "probe_items": len(probes),
        "probe_facts": grid.probe_facts,
        "probe_block_tokens": round(statistics.mean(len(b) for b, _, _ in probes)),
        "full_ppl": base["ppl"],
    }
    return rows, setup


def _row(
    name: str,
    spec: str,
    nbytes: int,
    full: KVBlock,
    got: dict[str, float],
    base: dict[str, float],
    acc: float,
) -> dict[str, Any]:
    ratio = nbytes / full.fp16_nbytes
    return {
        "name": name,
        "bits_or_budget": spec,
        "bytes_ratio_vs_fp16": round(ratio, 4),
        "x_smaller_than_fp16": round(1 / ratio, 2),
        "bytes_per_token": round(nbytes / full.n_tokens, 1),
        "ppl": round(got["ppl"], 4),
        "ppl_rise_pct": round(100 * (got["ppl"] / base["ppl"] - 1), 3),
        "kl": round(max(got["kl"], 0.0), 6),  # float noise can dip below 0
        "probe_acc": round(acc, 3),
    }


# -- time to first token ------------------------------------------------------------------


def _ms(fn: Any, repeats: int) -> tuple[float, Any]:
    """Best of `repeats` wall-clock runs in ms: the run least disturbed by other processes."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(1000 * (time.perf_counter() - start))
    return min(times), result


def ttft(model: Any, tokenizer: Any, grid: Grid, spec: str) -> list[dict[str, Any]]:
    """Recompute (prefill prefix + question) vs reuse (load the stored block from disk,
    prefill only the question), to the first generated token."""
    limit = getattr(model.config, "max_position_embeddings", 1 << 30)
    # The longest prefix leaves room for the 16 question tokens inside the model's context.
    lengths = sorted({min(n, limit - 16) for n in grid.ttft_lengths})
    ids = eval_ids(tokenizer, max(lengths) + 16, seed="kv-bench-ttft")
    fingerprint = model_fingerprint(model)
    method = parse_method(spec)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = KVStore(Path(tmp), ram_budget_bytes=0)  # every get reads the disk
        for n in lengths:
            prefix, question = ids[:n], ids[n : n + 16]
            prompt = torch.tensor([prefix + question])

            def recompute(prompt: torch.Tensor = prompt) -> int:
                with torch.no_grad():
                    return int(model(prompt).logits[0, -1].argmax())

            build_ms, block = _ms(
                lambda p=prefix: build_kv(model, p, compressor=method, fingerprint=fingerprint), 1
            )
            key = store.put(block)

            def reuse(k: str = key, q: list[int] = question) -> int:
                loaded = store.get(k, fingerprint)
                return int(continuation_logits(model, loaded, q)[-1].argmax())

            def reuse_ram(b: KVBlock = block, q: list[int] = question) -> int:
                return int(continuation_logits(model, b, q)[-1].argmax())

            recompute()  # warm-up for this shape
            reuse()
            recompute_ms, first = _ms(recompute, grid.repeats)
            reuse_ms, first_reused = _ms(reuse, grid.repeats)
            ram_ms, _ = _ms(reuse_ram, grid.repeats)
            load_ms, _ = _ms(lambda k=key: store.get(k, fingerprint), grid.repeats)
            rows.append(
                {
                    "prefix_tokens": n,
                    "method": describe(method),
                    "recompute_ms": round(recompute_ms, 2),
                    "reuse_ms": round(reuse_ms, 2),
                    "speedup": round(recompute_ms / reuse_ms, 2),
                    "reuse_from_ram_ms": round(ram_ms, 2),
                    "load_ms": round(load_ms, 2),
                    "build_ms": round(build_ms, 2),
                    "stored_bytes": block.nbytes,
                    "same_first_token": first == first_reused,
                }
            )
    return rows


# -- the run ------------------------------------------------------------------------------


def run(model_path: str | None, quick: bool) -> dict[str, Any]:
    grid = QUICK if quick else FULLRUN
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _run(model_path, quick, grid)
    finally:
        torch.set_num_threads(threads)


def _run(model_path: str | None, quick: bool, grid: Grid) -> dict[str, Any]:
    from engram.lm import load_model

    model, tokenizer = load_model(model_path)
    started = time.perf_counter()
    methods, setup = fidelity(model, tokenizer, grid)
    times = ttft(model, tokenizer, grid, FULL) + ttft(model, tokenizer, grid, "kivi:bits=4")
    cfg = model.config
    return {
        "methods": methods,
        "ttft": times,
        "config": {
            "model": model_path or "packaged Engram LM",
            "model_fingerprint": model_fingerprint(model)[:16],
            "layers": cfg.num_hidden_layers,
            "heads": cfg.num_attention_heads,
            "kv_heads": getattr(cfg, "num_key_value_heads", cfg.num_attention_heads),
            "head_dim": getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "quick": quick,
            "torch_threads": torch.get_num_threads(),
            **setup,
        },
        "goals": goals(methods, times),
        "seconds": round(time.perf_counter() - started, 1),
    }


def goals(methods: list[dict[str, Any]], times: list[dict[str, Any]]) -> dict[str, Any]:
    ours = [m for m in methods if not m["name"].startswith("transformers")]
    # |change| <= 3%: a perplexity that *falls* when tokens are dropped is not fidelity — the
    # model scores the continuation differently (see the KL column), it is not the same model
    small = [m for m in ours if m["x_smaller_than_fp16"] >= 6 and abs(m["ppl_rise_pct"]) <= 3]
    best = max(small, key=lambda m: m["x_smaller_than_fp16"], default=None)
    at_2k = [t for t in times if t["prefix_tokens"] == 2048 and t["method"] == FULL]
    speed = at_2k[0]["speedup"] if at_2k else None
    return {
        "six_x_smaller_at_3pct_ppl": best is not None,
        "six_x_method": best["name"] if best else None,
        "ttft_speedup_at_2k": speed,
        "ttft_10x_at_2k": speed is not None and speed >= 10,
    }


# -- report -------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: Path) -> bool:
    """Bytes vs perplexity rise, one point per method; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for m in result["methods"]:
        theirs = m["name"].startswith("transformers")
        ax.scatter(
            m["bytes_ratio_vs_fp16"],
            m["ppl_rise_pct"],
            marker="s" if theirs else "o",
            color="tab:red" if theirs else "tab:blue",
        )
        ax.annotate(
            m["name"].replace("transformers QuantizedCache ", ""),
            (m["bytes_ratio_vs_fp16"], m["ppl_rise_pct"]),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    ax.axhline(3, color="grey", linestyle="--", linewidth=0.8)
    ax.axvline(1 / 6, color="grey", linestyle=":", linewidth=0.8)
    ax.set_yscale("symlog", linthresh=0.1)  # linear near 0 (rises can be negative)
    ax.set_xlabel("stored bytes / fp16 bytes (goal: left of the dotted line, 6x smaller)")
    ax.set_ylabel("perplexity rise, % (symlog; goal: below the dashed line, 3%)")
    ax.set_title("KV cache compression: size vs fidelity (blue: Engram, red: transformers)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(result: dict[str, Any], command: str, plot_path: str | None) -> str:
    c, g = result["config"], result["goals"]
    lines = [
        "## Activation memory: stored, compressed KV caches",
        "",
        f"`{command}` — {c['model']} (fingerprint {c['model_fingerprint']}, "
        f"{c['layers']} layers, {c['heads']} query heads, "
        f"{c['kv_heads']} KV heads, head_dim {c['head_dim']}, {c['dtype']}, "
        f"{c['torch_threads']} threads, quick={c['quick']}), {result['seconds']} s.",
        "",
        f"Fidelity: a {c['prefix_tokens']}-token prefix of generated dialogue/fact text is "
        f"cached by each method; the next {c['continuation_tokens']} tokens are scored with "
        f"that cache vs the full one (full-cache perplexity {c['full_ppl']:.3f}). KL is "
        "KL(full || compressed) per next-token distribution. Probe: "
        f"{c['probe_items']} items of {c['probe_facts']} key/value facts "
        f"(~{c['probe_block_tokens']} tokens) cached as the block, the question after it, "
        "greedy exact match (every answer token must be the argmax). Size is stored "
        "bytes (packed codes + scales + float16 parts) over the float16 size of the full "
        "cache.",
        "",
        "| method | spec | bytes vs fp16 | × smaller | bytes/token | ppl rise % | KL | probe acc |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in result["methods"]:
        lines.append(
            f"| {m['name']} | `{m['bits_or_budget']}` | {m['bytes_ratio_vs_fp16']:.3f} | "
            f"{m['x_smaller_than_fp16']:.1f} | {m['bytes_per_token']:.0f} | "
            f"{m['ppl_rise_pct']:.2f} | {m['kl']:.4f} | {m['probe_acc']:.2f} |"
        )
    if plot_path:
        lines += ["", f"![bytes vs perplexity]({plot_path})"]
    lines += [
        "",
        "Time to first token: recompute = one forward over prefix + 16 question tokens; "
        "reuse = load the stored block from disk (checksum, decode) + a forward over the 16 "
        "question tokens only. Best of several runs (the machine is shared).",
        "",
        "| prefix tokens | method | recompute ms | reuse ms | speedup | reuse from RAM ms | "
        "load ms | build ms | stored MiB | same first token |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in result["ttft"]:
        lines.append(
            f"| {t['prefix_tokens']} | `{t['method']}` | {t['recompute_ms']:.1f} | "
            f"{t['reuse_ms']:.1f} | {t['speedup']:.1f}× | {t['reuse_from_ram_ms']:.1f} | "
            f"{t['load_ms']:.1f} | {t['build_ms']:.1f} | "
            f"{t['stored_bytes'] / (1 << 20):.2f} | {t['same_first_token']} |"
        )
    six = f"met by {g['six_x_method']}" if g["six_x_smaller_at_3pct_ppl"] else "not met"
    speed = g["ttft_speedup_at_2k"]
    ten = (
        "not measured"
        if speed is None
        else (f"{'met' if g['ttft_10x_at_2k'] else 'not met'}: {speed:.1f}× at 2,048 tokens")
    )
    lines += [
        "",
        f"Goals: **≥ 6× smaller than fp16 at ≤ 3% perplexity change: {six}.** "
        f"**Reuse TTFT ≥ 10× faster than recompute at a 2k prefix: {ten}.**",
        "",
        "A method whose perplexity falls by more than 3% does not count towards the first "
        "goal: the packaged model was trained on 512-token windows, so dropping tokens from a "
        "2,048-token prefix can lower its perplexity; that measures how poorly it uses long "
        "context, not how faithful the cache is (the KL column shows how far such caches move "
        "the next-token distribution). A checkpoint trained on long contexts (`--model PATH`) "
        "gives eviction a fair test.",
    ]
    return "\n".join(lines)
