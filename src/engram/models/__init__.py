"""Models as a resolved, cached resource: a registry of known models and their sources,
`pull` (fetch, verify, convert once into `<home>/models/<name>/`), `resolve`, `ls`, and
`load_causal_lm` for any transformers checkpoint.

Names resolve lazily so that `engram models --help` imports neither torch nor
transformers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engram.models.cache import ls, pull, resolve
    from engram.models.loading import load_causal_lm
    from engram.models.registry import (
        MODELS,
        HubSource,
        ModelEntry,
        WheelSource,
        register_model,
    )
    from engram.models.sources import ModelFetchError

_WHERE = {
    "MODELS": "engram.models.registry",
    "HubSource": "engram.models.registry",
    "ModelEntry": "engram.models.registry",
    "WheelSource": "engram.models.registry",
    "register_model": "engram.models.registry",
    "ModelFetchError": "engram.models.sources",
    "ls": "engram.models.cache",
    "pull": "engram.models.cache",
    "resolve": "engram.models.cache",
    "load_causal_lm": "engram.models.loading",
}

__all__ = [
    "MODELS",
    "HubSource",
    "ModelEntry",
    "ModelFetchError",
    "WheelSource",
    "load_causal_lm",
    "ls",
    "pull",
    "register_model",
    "resolve",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engram.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
