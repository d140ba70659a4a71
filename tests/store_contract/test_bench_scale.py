"""`engram bench scale --quick` on both backends, end to end in a subprocess: the report's
structure and sanity (no timing thresholds), the JSON beside it, the docs section and the
plot; bad input is refused before anything loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("psycopg")


def _bench(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram", "bench", "scale", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ENGRAM_HOME": str(home)},
    )


def _check_backend(name: str, r: dict[str, Any]) -> None:
    assert [s["memories"] for s in r["stages"]] == [1100, 3000], name
    for stage in r["stages"]:
        assert set(stage["owners"]) == {"100", "1000"}
        for size, t in stage["owners"].items():
            assert 0 < t["p50_ms"] <= t["p95_ms"] <= t["p99_ms"], (name, t)
            assert t["cold_ms"] > 0 and 0 < t["rows_scored"] <= int(size)
    load, disk, rss = r["load"], r["disk"], r["rss"]
    assert load["memories"] == 3000 and load["per_s"] > 0 and load["per_s_with_index"] > 0
    assert disk["per_memory"] > disk["vector_bytes_per_memory"] > 0
    assert disk["beside_vector_per_memory"] > 0 and disk["bytes"] > 0
    assert rss["peak_bytes"] > 0 and "per_memory" in rss


def test_quick_scale_bench_on_both_backends(pg_url: str, tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "benchmarks.md"
    done = _bench(
        tmp_path / "home", "--quick", "--json", "--database-url", pg_url,
        "--results", str(tmp_path / "results"), "--doc", str(doc),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["config"]["memories"] == 3000 and result["config"]["owners"] == [100, 1000]
    assert list(result["backends"]) == ["sqlite", "postgres"]
    for name, r in result["backends"].items():
        _check_backend(name, r)
    assert result["backends"]["sqlite"]["load"]["index_build_s"] == 0
    assert result["backends"]["postgres"]["disk"]["hnsw_bytes_per_memory"] > 0
    [saved] = (tmp_path / "results").glob("scale-*.json")
    assert json.loads(saved.read_text())["backends"] == result["backends"]
    text = doc.read_text()
    assert "<!-- bench:scale -->" in text and "| postgres | 3,000 | 1,000 |" in text
    assert (doc.parent / "img" / "scale-latency.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--memories", "0"], "--memories must be positive"),
        (["--memories", "50", "--owners", "100"], "more than --memories"),
        (["--stages", "0.5"], "--stages must rise to 1"),
        (["--backend", "mysql"], "--backend must be one of"),
        (["--quick", "--backend", "postgres", "--database-url", "mysql://x"], "postgresql://"),
    ],
)
def test_bad_input_is_refused_before_loading(args: list[str], message: str, tmp_path: Path) -> None:
    done = _bench(tmp_path, *args)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
