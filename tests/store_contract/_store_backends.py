"""What the store contract tests share: the vector size, and a second store on the same
database or file."""

from __future__ import annotations

from engram.store.base import Store
from engram.store.sqlite import SQLiteStore

DIM = 8


def another(store: Store) -> Store:
    """A second store on the same database or file (as another process would open it)."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, DIM)
    from engram.store.postgres.store import PostgresStore

    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url, DIM, max_size=4)
