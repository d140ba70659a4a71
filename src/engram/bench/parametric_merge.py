"""`engram bench parametric --update FILE`: re-run some methods and keep the other rows of
an earlier run, which must have taught the same facts to the same model the same way."""

from __future__ import annotations

import math
from typing import Any

from engram.bench.parametric import JOINT, JOINTS, METHODS, _goals
from engram.errors import ValidationError

# settings that decide what every row measures; two runs merge only when all are equal
COMPARABLE = (
    "batches",
    "facts_per_batch",
    "epochs",
    "rank",
    "learning_rate",
    "batch_size",
    "seed",
    "eval_texts",
    "replay_texts",
    "model",
)


def check_comparable(previous: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuses an earlier result whose settings differ from `config` (keys it lacks, such as
    `model` before the model is loaded, are not compared)."""
    old = previous.get("config") if isinstance(previous, dict) else None
    if not isinstance(old, dict):
        raise ValidationError("not a parametric bench result (no config)")
    differ = [k for k in COMPARABLE if k in config and old.get(k) != config[k]]
    if differ:
        raise ValidationError(f"the earlier run differs in {', '.join(differ)}")


def merge(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`current`'s rows replace `previous`'s rows of the same methods; the others are kept,
    in the bench's order, and '% of joint' and the goals are recomputed."""
    try:
        new_cfg = current["config"]
        old_ppl, new_ppl = previous["base"]["perplexity"], current["base"]["perplexity"]
        old_rows, old_details = previous["methods"], previous["details"]
    except (KeyError, TypeError) as err:
        raise ValidationError(f"not a parametric bench result ({err})") from err
    check_comparable(previous, new_cfg)
    if not math.isclose(old_ppl, new_ppl, rel_tol=1e-6):
        raise ValidationError(
            f"base perplexity {old_ppl} vs {new_ppl}: not the same model or texts"
        )
    rows = {r["name"]: r for r in old_rows} | {r["name"]: r for r in current["methods"]}
    known = [JOINT, *(n for n in JOINTS if n != JOINT), *METHODS, "retrieval"]
    order = [n for n in known if n in rows] + [n for n in rows if n not in known]
    joint = rows[JOINT]["avg_recall"] if JOINT in rows else 0
    merged = [
        {**rows[n], "recall_vs_joint_pct": round(100 * rows[n]["avg_recall"] / joint, 1)}
        if joint
        else rows[n]
        for n in order
    ]
    runs = [*_runs(previous), *_runs(current)]
    return {
        "methods": merged,
        "details": {n: (old_details | current["details"])[n] for n in order},
        "goals": _goals(merged),
        "config": {**new_cfg, "methods": [n for n in order if n != JOINT]},
        "base": current["base"],
        "wall_s": sum(r["wall_s"] for r in runs),
        "runs": runs,
    }


def _runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The invocations behind a result: its own, or the list an earlier merge kept."""
    if "runs" in result:
        return list(result["runs"])
    return [
        {
            "command": result.get("command"),
            "methods": [r["name"] for r in result["methods"]],
            "jobs": result["config"].get("jobs", 1),
            "wall_s": result["wall_s"],
        }
    ]
