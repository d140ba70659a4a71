"""Engram's exceptions. Driver errors are translated into these at the store boundary."""

from __future__ import annotations


class EngramError(Exception):
    """Base class of every error Engram raises on purpose."""

    code = "engram_error"


class ValidationError(EngramError, ValueError):
    """The caller passed input Engram cannot accept; nothing was written."""

    code = "invalid_input"


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


class SchemaVersionError(StoreError):
    """The store was written by a newer Engram than this one."""

    code = "schema_too_new"


class MissingExtraError(EngramError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"
