"""The project's own small causal LM (Llama-style, GQA) for the activation and
parametric tiers; any local transformers checkpoint loads through the same API.

Names resolve lazily so that `engram lm --help` (and the rest of the CLI) does not import
torch and transformers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engram.lm.checkpoint import default_model_path, load_model, read_manifest
    from engram.lm.probe import ProbeItem, copy_probe, probe_items
    from engram.lm.train import build_model

_WHERE = {
    "default_model_path": "engram.lm.checkpoint",
    "load_model": "engram.lm.checkpoint",
    "read_manifest": "engram.lm.checkpoint",
    "ProbeItem": "engram.lm.probe",
    "copy_probe": "engram.lm.probe",
    "probe_items": "engram.lm.probe",
    "build_model": "engram.lm.train",
}

__all__ = [
    "ProbeItem",
    "build_model",
    "copy_probe",
    "default_model_path",
    "load_model",
    "probe_items",
    "read_manifest",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engram.lm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
