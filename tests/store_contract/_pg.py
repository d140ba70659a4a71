"""A throwaway PostgreSQL 16 + pgvector server (the `pgserver` package) and fresh databases
on it; shared by the store contract tests and the worker, scale-out and migration tests."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_databases = itertools.count()


@contextmanager
def started_server() -> Iterator[Any]:
    """One server in a short temp dir (its socket path must stay short); skips the test
    when pgserver or psycopg is not installed."""
    pgserver = pytest.importorskip("pgserver", reason="pip install 'engram-os[dev]'")
    pytest.importorskip("psycopg", reason="pip install 'engram-os[postgres]'")
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="engram-pg-"))
    started = time.perf_counter()
    server = pgserver.get_server(root, cleanup_mode="stop")
    server.startup_s = time.perf_counter() - started
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # a throwaway server: no fsync (its shutdown checkpoint took ~50 s on a shared disk)
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def database_url(server: Any, name: str) -> str:
    """The server's URL, pointed at database `name`."""
    base: str = server.get_uri()
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}?{query}"


def fresh_database(server: Any) -> str:
    """A new, empty database on `server`; returns its URL."""
    import psycopg

    name = f"engram_test_{next(_databases)}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # a generated name, not input
    return database_url(server, name)
