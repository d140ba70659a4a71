"""The store's secret: 32 random bytes in an owner-only file next to the SQLite file.

It seals page cursors (`engram.scope.CursorCodec`), so cursors stay valid across
processes sharing the store (the CLI's `--cursor`, several server workers). Deleting the
file only invalidates outstanding cursors.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from engram.errors import ConfigError

SECRET_BYTES = 32
log = logging.getLogger("engram")


def secret_path(store_path: Path) -> Path:
    """Where the secret of the store at `store_path` lives."""
    return store_path.with_name(store_path.name + ".secret")


def load_or_create_secret(path: Path) -> bytes:
    """The secret at `path`, created atomically on first use (two processes racing agree
    on one). An unwritable directory gives a per-process secret, with a warning."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        _create(path)
        return _read(path)
    except OSError as err:
        log.warning("cannot keep a store secret at %s (%s); cursors last one process", path, err)
        return secrets.token_bytes(SECRET_BYTES)


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    if len(data) != SECRET_BYTES:
        raise ConfigError(
            f"store secret {path} is corrupt ({len(data)} bytes, expected {SECRET_BYTES}); "
            "delete it to make a new one (outstanding cursors become invalid)"
        )
    return data


def _create(path: Path) -> None:
    """Write a fresh secret to a private temporary file, then link it into place: the
    link fails if another process got there first, and a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(SECRET_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
