"""Engram's exceptions. Driver errors are translated into these at the store boundary."""

from __future__ import annotations


class EngramError(Exception):
    """Base class of every error Engram raises on purpose."""

    code = "engram_error"


class ValidationError(EngramError, ValueError):
    """The caller passed input Engram cannot accept; nothing was written."""

    code = "invalid_input"


class InvalidRequestError(ValidationError):
    """One request of `Memory.add_batch` is invalid: `index` says which, `problem` what."""

    def __init__(self, index: int, problem: str, numbered: bool = True):
        super().__init__(f"request {index}: {problem}" if numbered else problem)
        self.index = index
        self.problem = problem


class NotFoundError(EngramError, KeyError):
    """No memory with that id exists in the caller's scope."""

    code = "not_found"

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class ConfigError(EngramError):
    """The configuration is invalid or inconsistent."""

    code = "invalid_config"


class EmbedderMismatchError(ConfigError):
    """The store was built with a different embedder than the one configured."""

    code = "embedder_mismatch"


class StoreError(EngramError):
    """The storage backend failed (locked, corrupt, disk full ...)."""

    code = "store_error"


class CubeGoneError(StoreError):
    """A cube was erased (its last memory purged) while a caller still held its id;
    `Memory` resolves the owner again and retries."""

    code = "cube_gone"


class SchemaVersionError(StoreError):
    """The store was written by a newer Engram than this one."""

    code = "schema_too_new"


class MissingExtraError(EngramError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"
