"""Per-thread SQLite connections, opened with Engram's pragmas and closed when their
thread ends: a server with a thread per request must not run out of file descriptors."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path

from engram.errors import DiskFullError, StoreError, StoreLockedError

log = logging.getLogger(__name__)

_NEARLY_FULL = 64 << 10  # bytes free under which an I/O error is taken for a full disk


class _Holder:
    """One thread's connection. `threading.local` lets go of it when its thread ends, and
    a finalizer then closes the connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.pid = os.getpid()
        self.finalizer: weakref.finalize | None = None


class ThreadConnections:
    """A connection per thread (and per process, after a fork) to one SQLite file."""

    def __init__(self, path: Path, synchronous: str, busy_timeout_s: float):
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._open: set[sqlite3.Connection] = set()
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is not None and holder.pid == os.getpid():
            return holder.conn
        if holder is not None and holder.finalizer is not None:
            holder.finalizer.detach()  # inherited over fork: never used or closed here
        holder = _Holder(self._connect())
        holder.finalizer = weakref.finalize(holder, _release, holder.conn, self._open, self._lock)
        with self._lock:
            self._open.add(holder.conn)
        self._local.holder = holder
        return holder.conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")  # erased text is zeroed, not left in pages
        except sqlite3.Error as err:
            raise store_error(err, self.path, "open the SQLite store", self.busy_timeout_s) from err
        return conn

    def count(self) -> int:
        with self._lock:
            return len(self._open)

    def close_all(self) -> None:
        with self._lock:
            conns = list(self._open)
            self._open.clear()
        for conn in conns:
            conn.close()


def _release(
    conn: sqlite3.Connection, open_: set[sqlite3.Connection], lock: threading.Lock
) -> None:
    with lock:
        open_.discard(conn)
    conn.close()


def rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, unless SQLite has already rolled it back itself."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as err:  # the error that caused the rollback is the one to raise
        log.warning("rollback failed: %s", err)


def store_error(err: sqlite3.Error, path: Path, doing: str, busy_timeout_s: float) -> StoreError:
    """A driver error met trying to `doing` (e.g. "write to the store"), as Engram's: a full
    disk and a lock held too long say so, and where."""
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _no_space(path)):
        return DiskFullError(
            f"no space left on the device holding the store {path}: the write was rolled "
            "back; what was stored before is intact"
        )
    if code == sqlite3.SQLITE_BUSY:
        return StoreLockedError(
            f"the store {path} is locked by another process: gave up after waiting "
            f"{busy_timeout_s:g} s (sqlite.busy_timeout_s); nothing was written"
        )
    return StoreError(f"cannot {doing} {path}: {err}")


def _no_space(path: Path) -> bool:
    """Whether the device holding `path` is (nearly) full: SQLite reports a full disk met
    while creating or growing its WAL index as a bare I/O error."""
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < _NEARLY_FULL
