"""`engram bench ...` subcommands. Each writes JSON (with its config) and a docs section."""

from __future__ import annotations

import json
import shlex
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from engram.cli import common
from engram.errors import ValidationError

bench_app = typer.Typer(
    help="Benchmarks: print and save JSON results; --doc rewrites a markdown section.",
    no_args_is_help=True,
)

ResultsOpt = Annotated[Path, typer.Option(help="Folder for JSON results.")]
DocOpt = Annotated[
    Path | None,
    typer.Option(help="Markdown file whose section to rewrite (e.g. docs/benchmarks.md)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _command() -> str:
    return "engram " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _write(doc: Path | None, name: str, markdown: str) -> None:
    """Rewrite the doc's section only when asked: a benchmark never edits a checkout."""
    if doc is not None:
        from engram.bench.report import write_section

        write_section(doc, name, markdown)


def _figure(doc: Path | None, results: Path, name: str) -> tuple[Path, str]:
    """Where a plot goes (img/ beside the doc when one is rewritten, else beside the JSON
    results) and the path the markdown links it by."""
    base = doc.parent if doc is not None else results
    return base / "img" / name, f"img/{name}"


def _check_data(data: Path | None) -> None:
    """A given --data must be a file (None: the bench's bundled default)."""
    if data is not None and not data.is_file():
        raise typer.BadParameter(f"{data} is not a file", param_hint="--data")


def _ints(text: str) -> list[int]:
    return list(common.int_list(text))


@bench_app.command("ingest")
def ingest(
    data: Annotated[
        Path | None, typer.Option(help="LoCoMo-format JSON (default: the bundled sample).")
    ] = None,
    convs: Annotated[str, typer.Option(help="Conversation indexes, e.g. 0,1 (default all).")] = "",
    pipeline: Annotated[str, typer.Option(help="Retrieval pipeline.")] = "hybrid",
    k: Annotated[int, typer.Option("-k", help="Hits per search.")] = 10,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest turns/s and search p50/p95 (query embedding included)."""
    from engram.bench import ingest as bench
    from engram.bench.report import save_json

    sample = resources.files("engram") / "data" / "sample_conversation.json"
    with resources.as_file(sample) as default:
        result = bench.run(data or default, _ints(convs) or None, pipeline, k)
    save_json(results, "ingest", result)
    _write(doc, "ingest", bench.markdown(result, _command()))
    print(json.dumps(result) if as_json else json.dumps(result["total"], indent=2))


@bench_app.command("vectors")
def vectors(
    sizes: Annotated[str, typer.Option(help="Index sizes.")] = "1000,10000,100000",
    dim: Annotated[int, typer.Option(help="Vector dimension.")] = 384,
    k: Annotated[int, typer.Option("-k", help="Top k.")] = 100,
    queries: Annotated[int, typer.Option(help="Queries per size.")] = 200,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Exact top-k latency: numpy matrix vs faiss vs sqlite-vec (when installed)."""
    from engram.bench import vectors as bench
    from engram.bench.report import save_json

    result = bench.run(_ints(sizes), dim, k, queries)
    save_json(results, "vectors", result)
    _write(doc, "vectors", bench.markdown(result, _command()))
    print(json.dumps(result) if as_json else bench.markdown(result, _command()))


@bench_app.command("locomo")
def locomo(
    data: Annotated[Path, typer.Option(help="LoCoMo-format JSON file.")],
    convs: Annotated[str, typer.Option(help="Conversation indexes, e.g. 0,1 (default all).")] = "",
    ks: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "1,5,10,25,50",
    pipeline: Annotated[str, typer.Option(help="Retrieval pipeline to measure.")] = "hybrid",
    ablation: Annotated[
        bool, typer.Option("--ablation", help="Also run every hybrid-no-<part> pipeline.")
    ] = False,
    cv: Annotated[
        bool,
        typer.Option(
            "--cv",
            help="Instead: the default pipeline's weights tuned by leave-conversations-out "
            "cross-validation, beside the shipped (in-sample) weights.",
        ),
    ] = False,
    folds: Annotated[int, typer.Option(help="Folds of whole conversations for --cv.")] = 5,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Run on this (empty, scratch) store, e.g. postgresql://... "
            "(default: a temporary SQLite store)."
        ),
    ] = None,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evidence recall@k, MRR, NDCG@10, latency and ingest speed vs BM25 and dense."""
    from engram.bench import locomo as bench
    from engram.bench.report import save_json

    _check_data(data)
    if cv:
        _locomo_cv(data, _ints(convs) or None, folds, results, doc, as_json)
        return
    from engram.text.retrieval import PIPELINES

    ablations = sorted(p for p in PIPELINES if p.startswith("hybrid-no-")) if ablation else None
    result = bench.run(
        data,
        _ints(ks),
        pipeline,
        _ints(convs) or None,
        ablations=ablations,
        database_url=database_url,
    )
    save_json(results, "locomo", result)
    plot_path, link = _figure(doc, results, "locomo-recall.png")
    rel = link if bench.plot(result, plot_path) else None
    _write(doc, "locomo", bench.markdown(result, _command(), rel))
    print(json.dumps(result) if as_json else bench.markdown(result, _command(), rel))


def _locomo_cv(
    data: Path, convs: list[int] | None, folds: int, results: Path, doc: Path | None, as_json: bool
) -> None:
    from engram.bench import locomo_cv
    from engram.bench.report import save_json

    count = len(convs) if convs else None
    if folds < 2 or (count is not None and folds > count):
        raise typer.BadParameter(
            f"--folds must be at least 2 and at most the conversations used, got {folds}",
            param_hint="--folds",
        )
    try:
        result = locomo_cv.run(data, folds, convs)
    except ValueError as err:  # more folds than the file has conversations
        raise typer.BadParameter(str(err), param_hint="--folds") from err
    save_json(results, "locomo-cv", result)
    _write(doc, "locomo-cv", locomo_cv.markdown(result, _command()))
    print(json.dumps(result) if as_json else locomo_cv.markdown(result, _command()))


@bench_app.command("scale")
def scale(
    backend: Annotated[
        list[str] | None,
        typer.Option(help="sqlite or postgres; repeat for both (default: both, side by side)."),
    ] = None,
    memories: Annotated[int, typer.Option(help="Memories in the store at the end.")] = 1_000_000,
    owners: Annotated[
        str, typer.Option(help="Sizes of the owners whose searches are timed.")
    ] = "100,10000,100000",
    filler: Annotated[int, typer.Option(help="Size of every other owner.")] = 1000,
    dim: Annotated[int, typer.Option(help="Vector dimension.")] = 384,
    queries: Annotated[int, typer.Option(help="Timed searches per owner and stage.")] = 200,
    k: Annotated[int, typer.Option("-k", help="Hits per search.")] = 10,
    stages: Annotated[
        str, typer.Option(help="Store fractions after which searches are timed.")
    ] = "0.1,1",
    database_url: Annotated[
        str | None,
        typer.Option(
            help="An empty scratch postgresql:// database (default: a throwaway pgserver)."
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A tiny run (3,000 memories, 32-d) for tests.")
    ] = False,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Owner-scoped search p50/p95/p99 against store size, load memories/s, disk and RSS
    per memory: SQLite and PostgreSQL side by side on synthetic precomputed vectors."""
    from engram.bench import scale as bench
    from engram.bench.report import save_json

    try:
        fractions = tuple(float(x) for x in stages.split(",") if x.strip())
    except ValueError as err:
        raise typer.BadParameter(f"expected fractions like 0.1,1, got {stages!r}") from err
    settings: dict[str, Any] = {
        "memories": memories,
        "owners": tuple(_ints(owners)),
        "filler": filler,
        "dim": dim,
        "queries": queries,
    }
    if quick:
        settings.update(bench.QUICK)
    config = bench.ScaleConfig(
        **settings, k=k, stages=fractions, batch=1000, seed=0, pipeline="hybrid"
    )
    chosen = tuple(backend or bench.BACKENDS)
    try:  # every value checked before anything is loaded
        bench.check(config, chosen)
    except ValidationError as err:
        raise typer.BadParameter(str(err)) from err
    try:
        result = bench.run(config, chosen, database_url)
    except ValidationError as err:
        raise typer.BadParameter(str(err), param_hint="--database-url") from err
    result["command"] = _command()
    save_json(results, "scale", result)
    plot_path, link = _figure(doc, results, "scale-latency.png")
    rel = link if bench.plot(result, plot_path) else None
    _write(doc, "scale", bench.markdown(result, _command(), rel))
    print(json.dumps(result) if as_json else bench.markdown(result, _command(), rel))


@bench_app.command("feedback")
def feedback(
    data: Annotated[
        Path | None, typer.Option(help="LoCoMo-format JSON (default: the bundled sample).")
    ] = None,
    convs: Annotated[str, typer.Option(help="Conversation indexes, e.g. 0,1 (default all).")] = "",
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Held-out recall before and after feedback on the other half of the questions."""
    from engram.bench import feedback as bench
    from engram.bench.report import save_json

    _check_data(data)
    sample = resources.files("engram") / "data" / "sample_conversation.json"
    with resources.as_file(sample) as default:
        result = bench.run(data or default, _ints(convs) or None)
    save_json(results, "feedback", result)
    _write(doc, "feedback", bench.markdown(result, _command()))
    if as_json:
        print(json.dumps(result))
    else:
        print(bench.markdown(result, _command()))


@bench_app.command("kv")
def kv(
    model: Annotated[
        str | None, typer.Option(help="transformers checkpoint (default: the packaged LM).")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Reduced grid (< 3 min, CI).")] = False,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stored KV caches: bytes vs fp16, perplexity / KL, probe accuracy, TTFT vs recompute."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engram.bench import kv as bench
    from engram.bench.report import save_json

    result = bench.run(model, quick)
    save_json(results, "kv", result)
    plot_path, link = _figure(doc, results, "kv-bytes-vs-ppl.png")
    rel = link if bench.plot(result, plot_path) else None
    _write(doc, "kv", bench.markdown(result, _command(), rel))
    print(json.dumps(result) if as_json else bench.markdown(result, _command(), rel))


@bench_app.command("cli")
def cli_startup(
    runs: Annotated[int, typer.Option(min=1, max=50, help="Timed runs per command.")] = 5,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Also time `engram serve` to ready.")
    ] = True,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """CLI start-up as a user meets it: each command a whole new process."""
    from engram.bench import startup as bench
    from engram.bench.report import save_json

    result = bench.run(runs, serve)
    save_json(results, "cli", result)
    _write(doc, "cli", bench.markdown(result, _command()))
    print(json.dumps(result) if as_json else bench.markdown(result, _command()))


@bench_app.command("serve")
def serve(
    clients: Annotated[int, typer.Option(help="Concurrent clients.")] = 32,
    seconds: Annotated[float, typer.Option(help="How long the load runs.")] = 60.0,
    owners: Annotated[int, typer.Option(help="Owners (one write key each).")] = 8,
    seed: Annotated[int, typer.Option(help="Memories stored before the load.")] = 200,
    servers: Annotated[
        int, typer.Option(help="Server processes on one store (2+: needs --database-url).")
    ] = 1,
    database_url: Annotated[
        str | None, typer.Option(help="A PostgreSQL database the servers share.")
    ] = None,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load test of `engram serve` on loopback: throughput, p50/p99, errors, lost writes."""
    from engram.bench import serve as bench
    from engram.bench.report import save_json

    if servers < 1 or (servers > 1 and not database_url):
        raise typer.BadParameter(
            "several servers need one shared database: give --database-url postgresql://...",
            param_hint="--servers",
        )
    if database_url is not None and not database_url.startswith(("postgresql://", "postgres://")):
        raise typer.BadParameter("expected postgresql://...", param_hint="--database-url")
    result = bench.run(clients, seconds, owners, seed, servers, database_url)
    save_json(results, "serve", result)
    _write(doc, "serve", bench.markdown(result, _command()))
    print(json.dumps(result) if as_json else bench.markdown(result, _command()))
    if result["total"]["errors"] or result["total"]["lost_writes"]:
        raise typer.Exit(1)


@bench_app.command("parametric")
def parametric(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="transformers checkpoint, or 'tiny' (default: the packaged LM)."
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Reduced run (3 batches of 6 facts), for CI.")
    ] = False,
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated methods (default: all).")
    ] = "",
    n_batches: Annotated[
        int | None, typer.Option("--batches", min=2, help="Sequential batches (default 5).")
    ] = None,
    facts: Annotated[
        int | None, typer.Option("--facts", min=1, help="Facts per batch (default 100).")
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", min=1, max=64, help="Methods trained side by side, one process each."
        ),
    ] = 1,
    update: Annotated[
        Path | None,
        typer.Option(
            "--update",
            exists=True,
            dir_okay=False,
            help="Earlier result JSON: keep its rows of the methods not re-run now.",
        ),
    ] = None,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """LoRA continual learning: recall, BWT, forgetting, ppl drift per safeguard vs naive,
    joint and text retrieval."""
    import dataclasses

    from engram.bench import parametric as bench
    from engram.bench.report import save_json

    config = bench.BenchConfig.quick() if quick else bench.BenchConfig()
    if methods:
        chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
        unknown = [m for m in chosen if m not in {**bench.METHODS, **bench.JOINTS}]
        if unknown:
            raise typer.BadParameter(f"unknown methods {unknown}", param_hint="--methods")
        config = dataclasses.replace(config, methods=chosen)
    if n_batches is not None:
        config = dataclasses.replace(config, batches=n_batches)
    if facts is not None:
        config = dataclasses.replace(config, facts_per_batch=facts)
    previous = _earlier_result(update) if update else None
    if previous is not None:
        from engram.bench.parametric_merge import check_comparable

        try:  # before hours of training, not after
            check_comparable(previous, config.__dict__)
        except ValidationError as err:
            raise typer.BadParameter(str(err), param_hint="--update") from err
    result = bench.run(
        model, config, log=lambda line: print(line, file=sys.stderr, flush=True), jobs=jobs
    )
    result["command"] = _command()
    if previous is not None:
        from engram.bench.parametric_merge import merge

        try:
            result = merge(previous, result)
        except ValidationError as err:
            raise typer.BadParameter(str(err), param_hint="--update") from err
    save_json(results, "parametric", result)
    figures = [_figure(doc, results, f"parametric-{n}.png") for n in ("matrix", "curves")]
    rel = None
    if bench.plot(result, *(path for path, _ in figures)):
        rel = tuple(link for _, link in figures)
    text = bench.markdown(result, _command(), rel)  # type: ignore[arg-type]
    _write(doc, "parametric", text)
    print(json.dumps({"methods": result["methods"]}) if as_json else text)


def _earlier_result(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise typer.BadParameter(f"cannot read {path}: {err}", param_hint="--update") from err
    if not isinstance(loaded, dict):
        raise typer.BadParameter(f"{path} holds no result object", param_hint="--update")
    return loaded


@bench_app.command("router")
def router(
    data: Annotated[Path, typer.Option(help="LoCoMo-format JSON file.")],
    convs: Annotated[str, typer.Option(help="Conversation indexes, e.g. 0,1 (default all).")] = "",
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The adaptive router vs the default pipeline: recall per category and latency."""
    from engram.bench import router as bench
    from engram.bench.report import save_json

    _check_data(data)
    result = bench.run(data, _ints(convs) or None)
    save_json(results, "router", result)
    _write(doc, "router", bench.markdown(result, _command()))
    print(json.dumps(result) if as_json else bench.markdown(result, _command()))


@bench_app.command("devset")
def devset(
    out: Annotated[Path, typer.Option("--out", help="Where to write the LoCoMo-format JSON.")],
    conversations: Annotated[
        int, typer.Option("--conversations", min=1, help="Conversations to generate.")
    ] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
) -> None:
    """Generate the development set: invented people's chats, questions, evidence turns."""
    from engram.bench import devset as bench

    print(json.dumps(bench.write(out, seed, conversations)))


@bench_app.command("scheduler")
def scheduler(
    data: Annotated[
        Path | None, typer.Option(help="LoCoMo-format JSON (default: the bundled sample).")
    ] = None,
    conv: Annotated[int, typer.Option("--conv", help="Conversation index.")] = 0,
    days: Annotated[int, typer.Option("--days", min=1, help="Simulated days.")] = 10,
    queries: Annotated[int, typer.Option("--queries", min=1, help="Questions a day.")] = 100,
    zipf: Annotated[float, typer.Option("--zipf", min=0, help="Zipf exponent of the skew.")] = 1.1,
    budget: Annotated[
        int | None,
        typer.Option("--budget", min=0, help="The scheduler's KV bytes per owner (4 MiB)."),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="4 days, 30 questions a day, a 256 KiB budget (CI)."),
    ] = False,
    model: Annotated[
        str, typer.Option("--model", help="Model of the kv and lora tiers in every arm.")
    ] = "engram-lm",
    lora_epochs: Annotated[
        int, typer.Option("--lora-epochs", min=1, help="Passes over each adapter batch.")
    ] = 8,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A workload over simulated days: the scheduler vs none vs every tier holding all."""
    from engram.bench import scheduler as bench
    from engram.bench.report import save_json

    _check_data(data)
    if quick:
        days, queries = 4, 30
    if budget is None:
        budget = 256 << 10 if quick else 4 << 20
    work = bench.Workload(days, queries, zipf, 5, 0, budget, model, lora_epochs)
    sample = resources.files("engram") / "data" / "sample_conversation.json"
    with resources.as_file(sample) as default:
        result = bench.run(data or default, conv, work)
    save_json(results, "scheduler", result)
    figure, link = _figure(doc, results, "scheduler-days.png")
    text = bench.markdown(result, _command())
    if bench.plot(result, figure):
        text += f"\n\n![scheduler vs none vs all, per day]({link})"
    _write(doc, "scheduler", text)
    print(json.dumps(result) if as_json else text)


@bench_app.command("answer")
def answer(
    model: Annotated[
        str,
        typer.Option(help="The answering model: a registered name, a checkpoint, engram-lm."),
    ] = "smollm2-135m-instruct",
    questions: Annotated[int, typer.Option(help="Questions (one invented fact each).")] = 24,
    memories: Annotated[int, typer.Option(help="Memories per prompt (answer.k).")] = 24,
    filler: Annotated[int, typer.Option(help="Stored memories without a fact.")] = 24,
    shares: Annotated[
        str, typer.Option(help="Recompute shares of the composed kv rows, e.g. 0,0.15,0.3.")
    ] = "0,0.15,0.3",
    kv_method: Annotated[str, typer.Option(help="KV compression of the blocks.")] = "kivi:bits=4",
    quick: Annotated[
        bool, typer.Option("--quick", help="4 questions over 8 memories on the tiny LM (CI).")
    ] = False,
    results: ResultsOpt = Path("bench-results"),
    doc: DocOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Memory QA per route: exact match, agreement with text, time to first token."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engram.bench import answer as bench
    from engram.bench.report import save_json

    try:
        chosen = tuple(float(x) for x in shares.split(",") if x.strip())
    except ValueError as err:
        raise typer.BadParameter(f"expected fractions like 0,0.15, got {shares!r}") from err
    if not chosen:
        raise typer.BadParameter("give at least one share", param_hint="--shares")
    settings: dict[str, Any] = {
        "questions": questions,
        "memories": memories,
        "filler": filler,
        "shares": chosen,
    }
    if quick:
        settings = {**bench.QUICK, "model": "engram-lm"}
    else:  # a registered name: pulled once into the home, not into the bench's own
        from engram.config import load_config
        from engram.models.local import configured_checkpoint

        settings["model"] = str(configured_checkpoint(model, load_config()))
    config = bench.AnswerBenchConfig(**{"model": model, **settings}, kv_method=kv_method)
    try:
        config.check()
    except ValidationError as err:
        raise typer.BadParameter(str(err)) from err
    result = bench.run(config)
    save_json(results, "answer", result)
    text = bench.markdown(result, _command())
    _write(doc, "answer", text)
    print(json.dumps(result) if as_json else text)
