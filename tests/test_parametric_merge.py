"""`engram bench parametric --update`: rows of an earlier run merged with a re-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _engram_helpers import plain
from engram.bench.parametric_merge import merge
from engram.cli import app
from engram.errors import ValidationError

CONFIG = {
    "batches": 5,
    "facts_per_batch": 100,
    "epochs": 30,
    "rank": 16,
    "learning_rate": 0.003,
    "batch_size": 16,
    "seed": 0,
    "eval_texts": 64,
    "replay_texts": 512,
    "model": "engram-lm (packaged)",
}


def row(name: str, recall: float, bwt: float | None = None, drift: float = 0.0) -> dict[str, Any]:
    return {
        "name": name,
        "avg_recall": recall,
        "recall_vs_joint_pct": None,
        "bwt": bwt,
        "forgetting": None if bwt is None else -bwt,
        "ppl_drift_pct": drift,
        "train_s_per_batch": 1.0,
        "adapter_bytes": 10,
    }


def result(rows: list[dict[str, Any]], wall: float, ppl: float = 400.0, **cfg: Any) -> dict:
    return {
        "methods": rows,
        "details": {r["name"]: {"curve": [r["avg_recall"]]} for r in rows},
        "config": {**CONFIG, "jobs": 2, **cfg},
        "base": {"perplexity": ppl, "recall": [0.0] * 5},
        "wall_s": wall,
        "command": f"engram bench parametric ({wall})",
    }


def test_rerun_rows_replace_earlier_ones_and_shares_are_recomputed() -> None:
    earlier = result(
        [row("joint", 5.0), row("naive", 20.0, -90.0, 900.0), row("replay+distill", 95.0, -1.0)],
        wall=3000,
    )
    rerun = result([row("joint", 100.0), row("retrieval", 100.0, 0.0)], wall=400)
    merged = merge(earlier, rerun)
    assert [r["name"] for r in merged["methods"]] == [
        "joint",
        "naive",
        "replay+distill",
        "retrieval",
    ]
    shares = {r["name"]: r["recall_vs_joint_pct"] for r in merged["methods"]}
    assert shares == {"joint": 100.0, "naive": 20.0, "replay+distill": 95.0, "retrieval": 100.0}
    assert merged["goals"]["met_by"] == ["replay+distill"]
    assert merged["details"]["joint"] == {"curve": [100.0]}  # the re-run's, not the earlier
    assert merged["wall_s"] == 3400
    assert [r["command"] for r in merged["runs"]] == [earlier["command"], rerun["command"]]
    again = merge(merged, result([row("joint", 50.0)], wall=10))
    assert len(again["runs"]) == 3
    assert {r["name"]: r["recall_vs_joint_pct"] for r in again["methods"]}["naive"] == 40.0


def test_runs_that_measured_something_else_are_refused() -> None:
    earlier = result([row("joint", 5.0)], wall=1)
    with pytest.raises(ValidationError, match="differs in epochs, learning_rate"):
        merge(earlier, result([row("joint", 9.0)], wall=1, epochs=8, learning_rate=0.001))
    with pytest.raises(ValidationError, match="base perplexity"):
        merge(earlier, result([row("joint", 9.0)], wall=1, ppl=401.0))
    with pytest.raises(ValidationError, match="not a parametric bench result"):
        merge({"config": CONFIG}, result([row("joint", 9.0)], wall=1))


def test_cli_refuses_an_unreadable_or_different_earlier_run_before_training(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    out = CliRunner().invoke(app, ["bench", "parametric", "--quick", "--update", str(bad)])
    assert out.exit_code == 2 and "holds no result object" in plain(out.output)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(result([row("joint", 1.0)], wall=1)))  # full-size config
    out = CliRunner().invoke(
        app, ["bench", "parametric", "--quick", "--update", str(other), "--results", str(tmp_path)]
    )
    assert out.exit_code == 2
    assert "differs in batches, facts_per_batch" in " ".join(out.output.replace("│", " ").split())
    assert not list(tmp_path.glob("parametric-*.json"))  # refused before anything ran
