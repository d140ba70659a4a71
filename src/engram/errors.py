"""Engram's exceptions. Driver errors are translated into these at the store boundary."""

from __future__ import annotations

import errno


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


class DiskFullError(StoreError):
    """A write ran out of space (ENOSPC, EDQUOT) or hit the file-size limit (EFBIG). The
    write was abandoned whole: what was stored or written before it is intact."""

    code = "disk_full"


class StoreLockedError(StoreError):
    """Another process held the store's write lock for longer than the busy timeout
    (`sqlite.busy_timeout_s`); nothing was written: try again later."""

    code = "store_locked"


class OutputError(EngramError):
    """An output file (an export) cannot be written."""

    code = "output_error"


class OutputRefusedError(ValidationError):
    """An output path Engram will not write: the store it reads from (its WAL or SHM,
    anything under its home), a directory, or an existing file without `force`."""

    code = "output_refused"


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_disk_full(err: OSError) -> bool:
    """Whether an OSError means the disk (or the file-size limit) is full."""
    return err.errno in _FULL_ERRNOS


def write_error(
    err: OSError, path: object, what: str = "write", other: type[EngramError] = OutputError
) -> EngramError:
    """An OSError met writing `path`, as the Engram error to raise `from` it: DiskFullError
    when the disk is full, else `other`."""
    if is_disk_full(err):
        reason = "file size limit reached" if err.errno == errno.EFBIG else "disk full"
        return DiskFullError(f"no space left to {what} {path} ({reason})")
    return other(f"cannot {what} {path}: {err.strerror or err}")


class MissingExtraError(EngramError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"
