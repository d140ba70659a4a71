"""Errors of the activation tier: a stored KV cache that cannot be used, and why."""

from __future__ import annotations

from engram.errors import ConfigError, SchemaVersionError, StoreError


class KVCorruptError(StoreError):
    """A stored KV cache is damaged: a file is missing, unreadable or fails its checksum."""

    code = "kv_corrupt"


class KVFormatTooNewError(SchemaVersionError):
    """A stored KV cache was written by a newer Engram (unknown format version)."""

    code = "kv_format_too_new"


class KVModelMismatchError(ConfigError):
    """A stored KV cache belongs to another model or tokenizer than the one given."""

    code = "kv_model_mismatch"
