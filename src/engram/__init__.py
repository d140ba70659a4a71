"""Engram: a memory operating system for LLM applications."""

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
    Page,
    Provenance,
    SearchHit,
    Version,
    VersionEvent,
    register_memory_type,
)

__version__ = "0.1.0"

__all__ = [
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
