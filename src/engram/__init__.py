"""Engram: a memory operating system for LLM applications.

The public names load on first use (PEP 562), so `import engram.cli` or `engram --help`
does not import numpy, scipy or the store until a command needs them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from engram._version import __version__

if TYPE_CHECKING:
    from engram.aio import AsyncMemory
    from engram.config import EngramConfig, load_config
    from engram.cube import MemCube
    from engram.errors import (
        ConfigError,
        EmbedderMismatchError,
        EngramError,
        MissingExtraError,
        NotFoundError,
        SchemaVersionError,
        StoreError,
        ValidationError,
    )
    from engram.memory import AddRequest, Memory
    from engram.types import (
        CubeStats,
        FeedbackResult,
        MemoryItem,
        MemoryState,
        MemoryType,
        Message,
        Mount,
        Page,
        Provenance,
        SearchHit,
        Version,
        VersionEvent,
        register_memory_type,
    )

_WHERE = {
    "AsyncMemory": "engram.aio",
    "EngramConfig": "engram.config",
    "load_config": "engram.config",
    "MemCube": "engram.cube",
    "AddRequest": "engram.memory",
    "Memory": "engram.memory",
    **dict.fromkeys(
        (
            "ConfigError",
            "EmbedderMismatchError",
            "EngramError",
            "MissingExtraError",
            "NotFoundError",
            "SchemaVersionError",
            "StoreError",
            "ValidationError",
        ),
        "engram.errors",
    ),
    **dict.fromkeys(
        (
            "CubeStats",
            "FeedbackResult",
            "MemoryItem",
            "MemoryState",
            "MemoryType",
            "Message",
            "Mount",
            "Page",
            "Provenance",
            "SearchHit",
            "Version",
            "VersionEvent",
            "register_memory_type",
        ),
        "engram.types",
    ),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'engram' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "__version__",
    "AddRequest",
    "AsyncMemory",
    "ConfigError",
    "CubeStats",
    "EmbedderMismatchError",
    "EngramConfig",
    "EngramError",
    "FeedbackResult",
    "MemCube",
    "Memory",
    "MemoryItem",
    "MemoryState",
    "MemoryType",
    "Message",
    "MissingExtraError",
    "Mount",
    "NotFoundError",
    "Page",
    "Provenance",
    "SchemaVersionError",
    "SearchHit",
    "StoreError",
    "ValidationError",
    "Version",
    "VersionEvent",
    "load_config",
    "register_memory_type",
]
