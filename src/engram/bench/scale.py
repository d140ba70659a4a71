"""`engram bench scale`: both backends side by side on one synthetic store. Memories with
precomputed clustered vectors are bulk-loaded through `Store.insert`; owners of chosen
sizes (100 / 10k / 100k) are searched after each load stage with the default pipeline,
owner-scoped; then load throughput, disk and RSS per memory. Each backend runs in a
process of its own."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from engram.bench.scale_backends import (
    Backend,
    PostgresBackend,
    ScaleConfig,
    SQLiteBackend,
    run_backend,
)

__all__ = ["BACKENDS", "QUICK", "ScaleConfig", "check", "markdown", "plot", "run"]
from engram.errors import ValidationError

BACKENDS = ("sqlite", "postgres")
QUICK = {"memories": 3000, "owners": (100, 1000), "filler": 500, "dim": 32, "queries": 10}


def check(config: ScaleConfig, backends: tuple[str, ...]) -> None:
    """ValidationError naming the first bad value."""
    if config.memories <= 0:
        raise ValidationError(f"--memories must be positive, got {config.memories}")
    if not config.owners or min(config.owners) <= 0:
        raise ValidationError(f"--owners must be positive sizes, got {list(config.owners)}")
    if sum(config.owners) > config.memories:
        raise ValidationError(
            f"the measured owners hold {sum(config.owners):,} memories, more than "
            f"--memories {config.memories:,}"
        )
    for name, value in (("--filler", config.filler), ("--dim", config.dim)):
        if value <= 0:
            raise ValidationError(f"{name} must be positive, got {value}")
    if config.queries <= 0 or config.k <= 0 or config.batch <= 0:
        raise ValidationError("--queries, -k and the batch size must be positive")
    if not config.stages or any(not 0 < f <= 1 for f in config.stages):
        raise ValidationError(f"--stages must be fractions in (0, 1], got {config.stages}")
    if list(config.stages) != sorted(config.stages) or config.stages[-1] != 1:
        raise ValidationError(f"--stages must rise to 1, got {config.stages}")
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        raise ValidationError(f"--backend must be one of {', '.join(BACKENDS)}")


def _open(name: str, where: str, dim: int) -> Backend:
    if name == "sqlite":
        return SQLiteBackend(Path(where) / "engram.db", dim)
    return PostgresBackend(where, dim)


def say(line: str) -> None:
    """Progress on stderr (stdout may carry --json)."""
    print(line, file=sys.stderr, flush=True)


def _child(name: str, where: str, config: ScaleConfig) -> dict[str, Any]:
    return run_backend(partial(_open, name, where, config.dim), config, say)


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL 16 + pgvector (the `pgserver` package) in a temp dir."""
    try:
        import pgserver
    except ImportError as err:
        raise ValidationError(
            "the postgres backend needs --database-url postgresql://... (an empty scratch "
            "database), or the 'pgserver' package for a throwaway server"
        ) from err
    root = Path(tempfile.mkdtemp(prefix="engram-scale-pg-"))
    server = pgserver.get_server(root, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _empty(url: str) -> None:
    from engram.store.postgres.store import PostgresStore

    store = PostgresStore(url, None, max_size=1)
    try:
        if store.owners():
            raise ValidationError(
                f"--database-url must name an empty scratch database; {store.where} holds "
                f"{len(store.owners())} owner(s)"
            )
    finally:
        store.close()


def run(
    config: ScaleConfig,
    backends: tuple[str, ...] = BACKENDS,
    database_url: str | None = None,
    progress: Callable[[str], None] = say,
) -> dict[str, Any]:
    check(config, backends)
    if database_url and not database_url.startswith(("postgresql://", "postgres://")):
        raise ValidationError("--database-url must be a postgresql:// URL")
    results: dict[str, Any] = {}
    spawn = multiprocessing.get_context("spawn")
    for name in backends:
        progress(f"{name}: loading {config.memories:,} memories")
        with _location(name, database_url) as where, _single_threaded_blas():
            with spawn.Pool(1) as pool:
                results[name] = pool.apply(_child, (name, where, config))
    return {
        "config": {**vars(config), "backends": list(backends), "blas_threads": 1},
        "backends": results,
    }


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Children start with one BLAS thread: on two shared cores a second thread made a
    10k x 384 matrix-vector product five times slower (spinning against other work)."""
    saved = {var: os.environ.get(var) for var in _BLAS_THREADS}
    os.environ.update({var: "1" for var in _BLAS_THREADS})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _location(name: str, database_url: str | None) -> Iterator[str]:
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="engram-scale-") as home:
            yield home
    elif database_url:
        _empty(database_url)
        yield database_url
    else:
        with scratch_postgres() as url:
            yield url


def markdown(result: dict[str, Any], command: str, plot: str | None = None) -> str:
    cfg = result["config"]
    lines = [
        "## Scale: owner-scoped search, load, disk and RSS (SQLite and PostgreSQL)",
        "",
        f"Command: `{command}`  ",
        f"{cfg['memories']:,} memories in the store at the last stage; measured owners of "
        f"{', '.join(f'{n:,}' for n in cfg['owners'])} memories, the rest in owners of "
        f"{cfg['filler']:,}; {cfg['dim']}-d clustered unit vectors (precomputed: no "
        f"embedding model), {cfg['queries']} timed `{cfg['pipeline']}` searches per owner "
        f"and stage, k={cfg['k']}, loaded through `Store.insert` in batches of "
        f"{cfg['batch']:,}.",
        "",
        "| backend | store size | owner size | p50 ms | p95 ms | p99 ms | first search ms "
        "| rows scored |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["backends"].items():
        for stage in r["stages"]:
            for size, t in stage["owners"].items():
                lines.append(
                    f"| {name} | {stage['memories']:,} | {int(size):,} | {t['p50_ms']} | "
                    f"{t['p95_ms']} | {t['p99_ms']} | {t['cold_ms']} | "
                    f"{t.get('rows_scored', '')} |"
                )
    lines += [
        "",
        "| backend | load memories/s | vector index build s | memories/s with index | "
        "disk B/memory | vector B/memory | disk B/memory beside vector | RSS B/memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["backends"].items():
        load, disk = r["load"], r["disk"]
        lines.append(
            f"| {name} | {load['per_s']:,} | {load['index_build_s']} | "
            f"{load['per_s_with_index']:,} | {disk['per_memory']:,} | "
            f"{disk['vector_bytes_per_memory']} | {disk['beside_vector_per_memory']:,} | "
            f"{r['rss']['per_memory']:,} |"
        )
    if plot:
        lines += ["", f"![search latency against store size]({plot})"]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    """p95 latency against store size per backend and owner size; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, r), style in zip(result["backends"].items(), ("-", "--"), strict=False):
        for size in result["config"]["owners"]:
            xs = [s["memories"] for s in r["stages"]]
            ys = [s["owners"][str(size)]["p95_ms"] for s in r["stages"]]
            ax.plot(xs, ys, style, marker="o", label=f"{name}, owner of {size:,}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memories in the store")
    ax.set_ylabel("owner-scoped search p95 (ms)")
    ax.set_title("Search latency against store size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
