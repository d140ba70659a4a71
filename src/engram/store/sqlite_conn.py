"""Per-thread SQLite connections, opened with Engram's pragmas and closed when their
thread ends: a server with a thread per request must not run out of file descriptors."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path

from engram.errors import StoreError

log = logging.getLogger(__name__)


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
            raise StoreError(f"cannot open SQLite store {self.path}: {err}") from err
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
