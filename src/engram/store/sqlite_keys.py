"""API keys in a SQLite file of their own (`$ENGRAM_HOME/keys.db`, the embedded default):
the memory store never holds them, and a copied engram.db carries no credentials."""

from __future__ import annotations

import builtins
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from engram.errors import StoreError
from engram.store.keys import KEY_COLUMNS, ApiKey, KeyRow, KeyStore, key_column

# Each statement is idempotent, so a keys.db written by an older Engram gains the tables
# added since (read grants) when it is opened.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    owner TEXT,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    created_at TEXT NOT NULL,
    revoked_at TEXT
)""",
    """
CREATE TABLE IF NOT EXISTS api_key_reads (
    key_id TEXT NOT NULL REFERENCES api_keys (id),
    owner TEXT NOT NULL,
    PRIMARY KEY (key_id, owner)
)""",
)


class SQLiteKeyStore(KeyStore):
    """Keys in one SQLite file, a connection per thread."""

    def __init__(self, path: Path | str):
        self.path = Path(path).expanduser()
        self.where = f"the key store {self.path}"
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._write() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open {self.where}: {err}") from err

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _insert(self, key: ApiKey, token_sha256: str) -> bool:
        revoked = None if key.revoked_at is None else key.revoked_at.isoformat()
        try:
            with self._write() as conn:
                done = conn.execute(
                    f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    (
                        key.id,
                        token_sha256,
                        key.owner,
                        key.scope.value,
                        key.created_at.isoformat(),
                        revoked,
                    ),
                )
                if not done.rowcount:
                    return False
                conn.executemany(
                    "INSERT INTO api_key_reads (key_id, owner) VALUES (?, ?)",
                    [(key.id, cube) for cube in key.reads],
                )
        except sqlite3.Error as err:
            raise StoreError(f"cannot write {self.where}: {err}") from err
        return True

    def _select(self, column: str | None, value: str | None) -> builtins.list[KeyRow]:
        where = "" if column is None else f" WHERE {key_column(column)} = ?"
        rows = self._read(
            f"SELECT {KEY_COLUMNS} FROM api_keys{where}", () if value is None else (value,)
        )
        return [
            KeyRow(
                id=row[0],
                token_sha256=row[1],
                owner=row[2],
                scope=row[3],
                created_at=datetime.fromisoformat(row[4]),
                revoked_at=None if row[5] is None else datetime.fromisoformat(row[5]),
            )
            for row in rows
        ]

    def _grants(self, key_ids: builtins.list[str]) -> dict[str, builtins.list[str]]:
        reads: dict[str, builtins.list[str]] = {}
        for start in range(0, len(key_ids), 500):
            chunk = key_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for key_id, owner in self._read(
                f"SELECT key_id, owner FROM api_key_reads WHERE key_id IN ({marks}) ORDER BY rowid",
                tuple(chunk),
            ):
                reads.setdefault(key_id, []).append(owner)
        return reads

    def _set_revoked(self, key_id: str, at: datetime) -> None:
        try:
            with self._write() as conn:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (at.isoformat(), key_id),
                )
        except sqlite3.Error as err:
            raise StoreError(f"cannot write {self.where}: {err}") from err

    def _read(self, sql: str, params: tuple[object, ...]) -> builtins.list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read {self.where}: {err}") from err

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
