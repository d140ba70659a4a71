"""Derived memories: extractors (one strategy per class, one registry), the plan writer and
the background job system that runs them after `add`. See docs/extraction.md.

Names load on first use (PEP 562), so `engram --help` does not import the extractors."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engram.extract.base import (
        Derived,
        ExtractionContext,
        ExtractionError,
        Extractor,
        Plan,
        Retirement,
        Revision,
    )
    from engram.extract.registry import EXTRACTORS, build_extractors, register_extractor
    from engram.store.jobs import Job, JobState

_WHERE = {
    **dict.fromkeys(
        (
            "Derived",
            "ExtractionContext",
            "ExtractionError",
            "Extractor",
            "Plan",
            "Retirement",
            "Revision",
        ),
        "engram.extract.base",
    ),
    **dict.fromkeys(
        ("EXTRACTORS", "build_extractors", "register_extractor"), "engram.extract.registry"
    ),
    "Job": "engram.store.jobs",
    "JobState": "engram.store.jobs",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engram.extract' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


__all__ = [
    "EXTRACTORS",
    "Derived",
    "ExtractionContext",
    "ExtractionError",
    "Extractor",
    "Job",
    "JobState",
    "Plan",
    "Retirement",
    "Revision",
    "build_extractors",
    "register_extractor",
]
