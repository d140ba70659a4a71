"""Saving benchmark results: JSON with the exact config, and a section of docs/benchmarks.md."""

from __future__ import annotations

import json
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engram.config import EmbedderConfig, load_config
from engram.embed import build_embedder
from engram.embed.base import Embedder
from engram.errors import ValidationError
from engram.memory import Memory
from engram.scope import owner_args


def machine() -> dict[str, Any]:
    import os

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def save_json(results_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({**payload, "machine": machine()}, indent=2, default=str))
    return path


def write_section(doc: Path, name: str, markdown: str) -> None:
    """Replace the block between `<!-- bench:NAME -->` markers (appended if absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@contextmanager
def bench_memory(database_url: str | None = None, **search: Any) -> Iterator[Memory]:
    """A Memory on a fresh temporary store (or on `database_url`, which must hold no
    owners yet) with an uncached, warmed-up default embedder: timings include every query
    embedding and no one-time kernel set-up."""
    embedder = build_embedder(EmbedderConfig(cache_size=0))
    with tempfile.TemporaryDirectory() as home:
        store = {"database_url": database_url} if database_url else {}
        config = load_config(home=home, search={"track_access": False, **search}, **store)
        with Memory(config, embedder=embedder) as memory:
            if database_url and memory.owners():
                raise ValidationError(
                    "the benchmark needs an empty database (it writes and erases its own "
                    f"owners); this one holds {len(memory.owners())} owner(s)"
                )
            warm_up(embedder)
            memory.add("warm-up", user_id="_warmup")
            memory.search("warm-up", user_id="_warmup")
            try:
                yield memory
            finally:
                if database_url:  # leave the scratch database as it was found
                    for owner in memory.owners():
                        memory.delete_all(**owner_args(owner), hard=True)


def warm_up(embedder: Embedder) -> None:
    """Run the model once over texts of every length bucket, so one-time kernel set-up
    (oneDNN creates primitives per input shape) is not timed as ingest or search."""
    lengths = range(1, 130, 4)  # a full batch of each length: every padded shape is seen
    embedder.embed([" ".join(["memory"] * n) for n in lengths for _ in range(32)])
    for n in lengths[:8]:
        embedder.embed_one(" ".join(["memory"] * n))
