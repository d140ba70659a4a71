"""Export memories as JSON lines, to a stream or to a file that is never the store.

A file export is written to a temporary file next to the target and moved into place only
when complete. The target is resolved first (a symlink's target is written, not the link
replaced) and refused when it is the store, its WAL/SHM/journal, anything under the home
the export reads from, or an existing file without `force`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from engram.errors import OutputRefusedError, write_error
from engram.memory import Memory
from engram.scope import Scope

_STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def write_jsonl(
    memory: Memory,
    scopes: Iterable[Mapping[str, str | None]],
    sink: IO[str],
    include_archived: bool = False,
) -> int:
    """Write every memory of each owner scope as one JSON line; returns how many."""
    count = 0
    for scope in scopes:
        for item in memory.iter_all(
            user_id=scope.get("user_id"),
            agent_id=scope.get("agent_id"),
            include_archived=include_archived,
        ):
            sink.write(item.model_dump_json() + "\n")
            count += 1
    return count


def _store_files(memory: Memory) -> list[Path]:
    db = memory.config.sqlite_path.resolve()
    return [db.with_name(db.name + suffix) for suffix in _STORE_SUFFIXES]


def _same_file(a: Path, b: Path) -> bool:
    """The same file on disk (hard links included); False when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_target(memory: Memory, output: Path, force: bool = False) -> Path:
    """The resolved path an export to `output` writes, or OutputRefusedError."""
    target = Path(output).expanduser().resolve()
    home = memory.config.home.expanduser().resolve()
    if target == home or target.is_relative_to(home):
        raise OutputRefusedError(
            f"refusing to export to {output}: it is inside the store's home {home}"
        )
    for store_file in _store_files(memory):
        if target == store_file or _same_file(target, store_file):
            raise OutputRefusedError(
                f"refusing to export to {output}: it is the store {store_file}"
            )
    if target.is_dir():
        raise OutputRefusedError(f"cannot export to {output}: it is a directory")
    if target.exists() and not force:
        raise OutputRefusedError(f"{output} exists; pass --force to replace it")
    return target


@contextmanager
def _staged(target: Path) -> Iterator[tuple[IO[str], Path]]:
    """A temporary file next to `target`, flushed to disk when the block succeeds and
    removed whatever happens (the caller moves it into place inside the block)."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh, tmp
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (not every filesystem can: then skip it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _place(tmp: Path, target: Path, force: bool) -> None:
    """Move the finished export to `target`; without `force` never over an existing file,
    even one created since the check (a hard link fails when the name exists)."""
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError as err:
        raise OutputRefusedError(f"{target} exists; pass --force to replace it") from err
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if target.exists():  # a filesystem without hard links: check, then rename
            raise OutputRefusedError(f"{target} exists; pass --force to replace it") from err
        os.replace(tmp, target)


def export_file(
    memory: Memory,
    output: Path | str,
    scopes: Iterable[Mapping[str, str | None]],
    *,
    include_archived: bool = False,
    force: bool = False,
) -> int:
    """Export to a file (see the module docstring); returns how many memories.
    OutputRefusedError for a refused target, DiskFullError or OutputError when writing fails."""
    scopes = list(scopes)
    for scope in scopes:  # a bad owner is bad input before anything about the file
        Scope.of(scope.get("user_id"), scope.get("agent_id"))
    target = check_target(memory, Path(output), force)
    try:
        with _staged(target) as (fh, tmp):
            count = write_jsonl(memory, scopes, fh, include_archived)
            fh.flush()
            os.fsync(fh.fileno())
            _place(tmp, target, force)
    except OSError as err:
        raise write_error(err, output) from err
    _fsync_dir(target.parent)
    return count


__all__ = ["check_target", "export_file", "write_jsonl"]
