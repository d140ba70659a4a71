"""Parametric memory: LoRA adapters that learn a cube's memories without forgetting.

Heavy dependencies (torch, transformers, peft) load on first use of a name, so importing
`engram.parametric` — or the CLI — stays cheap."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engram.parametric.cube import load_base, registry_for, teach
    from engram.parametric.evaluation import (
        AccuracyMatrix,
        FactScore,
        perplexity,
        recall,
        recognition_auc,
        score_examples,
    )
    from engram.parametric.examples import Example, Fact, examples_for, facts_from_memories
    from engram.parametric.general_text import general_pool
    from engram.parametric.host import AdapterHost
    from engram.parametric.learner import BatchReport, ContinualLearner
    from engram.parametric.registry import AdapterManifest, AdapterRegistry, model_fingerprint
    from engram.parametric.safeguards import SAFEGUARDS, Safeguard, build_safeguards

_WHERE = {
    "load_base": "engram.parametric.cube",
    "registry_for": "engram.parametric.cube",
    "teach": "engram.parametric.cube",
    "AccuracyMatrix": "engram.parametric.evaluation",
    "FactScore": "engram.parametric.evaluation",
    "perplexity": "engram.parametric.evaluation",
    "recall": "engram.parametric.evaluation",
    "recognition_auc": "engram.parametric.evaluation",
    "score_examples": "engram.parametric.evaluation",
    "Example": "engram.parametric.examples",
    "Fact": "engram.parametric.examples",
    "examples_for": "engram.parametric.examples",
    "facts_from_memories": "engram.parametric.examples",
    "general_pool": "engram.parametric.general_text",
    "AdapterHost": "engram.parametric.host",
    "BatchReport": "engram.parametric.learner",
    "ContinualLearner": "engram.parametric.learner",
    "AdapterManifest": "engram.parametric.registry",
    "AdapterRegistry": "engram.parametric.registry",
    "model_fingerprint": "engram.parametric.registry",
    "SAFEGUARDS": "engram.parametric.safeguards",
    "Safeguard": "engram.parametric.safeguards",
    "build_safeguards": "engram.parametric.safeguards",
}

__all__ = [
    "AccuracyMatrix",
    "AdapterHost",
    "AdapterManifest",
    "AdapterRegistry",
    "BatchReport",
    "ContinualLearner",
    "Example",
    "Fact",
    "FactScore",
    "SAFEGUARDS",
    "Safeguard",
    "build_safeguards",
    "examples_for",
    "facts_from_memories",
    "general_pool",
    "load_base",
    "model_fingerprint",
    "perplexity",
    "recall",
    "recognition_auc",
    "registry_for",
    "score_examples",
    "teach",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engram.parametric' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
