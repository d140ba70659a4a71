"""A real PostgreSQL 16 + pgvector server (`pgserver`, see _pg.py) for the session, a fresh
database per test, and the `store` fixture: every contract test runs on SQLite and on
PostgreSQL through the Store protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pg import fresh_database, started_server
from _store_backends import DIM

from engram.store.base import Store
from engram.store.sqlite import SQLiteStore


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One throwaway server for the session."""
    with started_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """A fresh, empty database on the session's server."""
    return fresh_database(pg_server)


BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A Store of each backend, empty, with an 8-d vector space."""
    if request.param == "postgres":
        from engram.store.postgres.store import PostgresStore

        made: Store = PostgresStore(request.getfixturevalue("pg_url"), DIM, max_size=4)
    else:
        made = SQLiteStore(tmp_path / "engram.db", DIM)
    try:
        yield made
    finally:
        made.close()
