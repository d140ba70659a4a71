"""Pooled psycopg connections, one owner per transaction, and driver errors translated into
Engram's at this boundary.

Every transaction first switches to the application role (`SET LOCAL ROLE`, which is not
the tables' owner) and names its owner (`engram.owner`), so row-level security holds each
query to that owner's rows even if its WHERE clause forgot them. The few operations that
span owners (locate an id, claim the next job, list owners) say so with `ALL_OWNERS`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from pgvector.psycopg import register_vector
from psycopg import errors as pg_errors

from engram.errors import DiskFullError, StoreError, StoreLockedError

ALL_OWNERS = "\x00all"  # a scope, never an owner: PostgreSQL text cannot hold NUL


def describe(url: str) -> str:
    """The database a URL names, without its password (for error messages)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "the PostgreSQL store"
    host = info.get("host") or "localhost"
    return f"PostgreSQL {info.get('dbname') or ''}@{host}"


def store_error(err: Exception, where: str, doing: str) -> StoreError:
    """A driver error met trying to `doing`, as Engram's."""
    if isinstance(err, pg_errors.DiskFull | pg_errors.OutOfMemory):
        return DiskFullError(f"{where} is out of space: the write was rolled back ({err})")
    if isinstance(err, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
        return StoreLockedError(f"{where}: a concurrent write conflicted; nothing was written")
    if isinstance(err, psycopg_pool.PoolTimeout):
        return StoreLockedError(f"{where}: no free connection in the pool ({err})")
    if isinstance(err, psycopg.OperationalError):
        return StoreError(f"cannot reach {where}: {err}")
    return StoreError(f"cannot {doing} {where}: {err}")


def _configure(conn: psycopg.Connection) -> None:
    conn.execute("SET timezone TO 'UTC'")
    # psycopg prepares a statement run five times; PostgreSQL then switches to a generic
    # plan, blind to which owner and keys it is for. Owners differ by orders of magnitude,
    # and a generic plan read a 100,000-memory owner through its cube index to fetch ten
    # memories by key (20-30 ms instead of 0.3) or sorted it by distance instead of using
    # the HNSW index (1.5 s). Every execution is planned for its own values.
    conn.execute("SET plan_cache_mode TO force_custom_plan")
    register_vector(conn)
    conn.commit()


class Database:
    """A connection pool; `tx` runs one owner-scoped transaction (joining the thread's
    open `joined()` transaction when there is one)."""

    def __init__(
        self, url: str, app_role: str, min_size: int, max_size: int, timeout_s: float
    ) -> None:
        self.where = describe(url)
        self.app_role = app_role
        self._local = threading.local()
        try:
            self.pool = psycopg_pool.ConnectionPool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout_s,
                configure=_configure,
                open=False,
            )
            self.pool.open(wait=True, timeout=timeout_s)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as err:
            raise store_error(err, self.where, "open") from err

    @contextmanager
    def tx(self, owner: str, *, snapshot: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in a transaction scoped to `owner` (or ALL_OWNERS); `snapshot`: one
        consistent read-only view (REPEATABLE READ) for reads of several statements."""
        joined: psycopg.Connection | None = getattr(self._local, "conn", None)
        if joined is not None:
            with joined.cursor() as cur:
                try:
                    self._scope(cur, owner)
                    yield cur
                except psycopg.Error as err:
                    raise store_error(err, self.where, "use") from err
            return
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                if snapshot:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                self._scope(cur, owner)
                yield cur
        except (psycopg.Error, psycopg_pool.PoolTimeout) as err:
            raise store_error(err, self.where, "write to" if not snapshot else "read") from err

    def _scope(self, cur: psycopg.Cursor[Any], owner: str) -> None:
        everyone = owner == ALL_OWNERS
        cur.execute(
            "SELECT set_config('role', %s, true), set_config('engram.owner', %s, true), "
            "set_config('engram.scope', %s, true)",
            (self.app_role, "" if everyone else owner, "all" if everyone else "owner"),
        )

    @contextmanager
    def joined(self) -> Iterator[None]:
        """Every `tx` of this thread inside the block is one transaction."""
        if getattr(self._local, "conn", None) is not None:
            yield  # nested: the outer block commits
            return
        try:
            with self.pool.connection() as conn:
                self._local.conn = conn
                try:
                    yield
                finally:
                    self._local.conn = None
        except (psycopg.Error, psycopg_pool.PoolTimeout) as err:
            raise store_error(err, self.where, "write to") from err

    def close(self) -> None:
        self.pool.close()
