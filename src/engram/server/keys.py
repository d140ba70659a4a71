"""API keys: random bearer tokens stored as SHA-256 hashes in `$ENGRAM_HOME/keys.db`.

A key is bound to one owner ('user:alice', 'agent:bot') and a scope: `read` (get, list,
search), `write` (also add, update, archive, restore, erase) or `admin` (every owner; an
admin key has no owner). A bound key may also be granted reading other owners' cubes
(`reads`): it then reads them where its owner mounts them (docs/compose.md), never writes
them. The token itself is shown once, when the key is created; the store keeps only its
hash, so a stolen `keys.db` does not give access.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from engram.errors import NotFoundError, StoreError, ValidationError
from engram.scope import Scope, check_id

TOKEN_PREFIX = "egk_"
# The key store's schema; each statement is idempotent, so a keys.db written by an older
# Engram gains the tables added since (read grants) when it is opened.
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


class KeyScope(StrEnum):
    """What a key may do; each level includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: KeyScope) -> bool:
        order = (KeyScope.READ, KeyScope.WRITE, KeyScope.ADMIN)
        return order.index(self) >= order.index(needed)


class ApiKey(BaseModel):
    """One API key as stored (never the token itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    owner: str | None  # 'user:alice' / 'agent:bot'; None for admin keys (every owner)
    scope: KeyScope
    created_at: datetime
    reads: tuple[str, ...] = ()  # other owners whose mounted cubes it may read
    revoked: bool = False
    revoked_at: datetime | None = None


def parse_owner(owner: str) -> str:
    """'alice' or 'user:alice' -> 'user:alice'; 'agent:bot' stays. Checked like user ids."""
    if not isinstance(owner, str):
        raise ValidationError("owner must be a string such as alice, user:alice or agent:bot")
    kind, sep, name = owner.partition(":")
    if not sep or kind not in ("user", "agent"):
        kind, name = "user", owner
    scope = Scope.of(user_id=name) if kind == "user" else Scope.of(agent_id=name)
    assert scope.owner is not None
    return scope.owner


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class KeyStore:
    """API keys in one SQLite file (its own file: the memory store never holds secrets)."""

    def __init__(self, path: Path | str):
        self.path = Path(path).expanduser()
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._write() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open the key store {self.path}: {err}") from err

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.row_factory = sqlite3.Row
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

    def create(
        self,
        owner: str | None,
        scope: KeyScope | str = KeyScope.WRITE,
        reads: Iterable[str] = (),
    ) -> tuple[str, ApiKey]:
        """A new key: returns the token (shown once) and its record. `reads`: other
        owners whose cubes it may read where its owner mounts them."""
        try:
            level = KeyScope(scope)
        except ValueError as err:
            raise ValidationError(f"scope must be read, write or admin, got {scope!r}") from err
        if level is KeyScope.ADMIN and owner is not None:
            raise ValidationError("an admin key acts for every owner; create it without an owner")
        if level is not KeyScope.ADMIN and owner is None:
            raise ValidationError(f"a {level.value} key needs an owner (e.g. alice, agent:bot)")
        bound = None if owner is None else parse_owner(owner)
        granted = _grants(bound, reads)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=secrets.token_hex(6), owner=bound, scope=level, created_at=_now(), reads=granted
        )
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO api_keys (id, token_sha256, owner, scope, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key.id, hash_token(token), bound, level.value, key.created_at.isoformat()),
                )
                conn.executemany(
                    "INSERT INTO api_key_reads (key_id, owner) VALUES (?, ?)",
                    [(key.id, cube) for cube in granted],
                )
        except sqlite3.Error as err:
            raise StoreError(f"cannot write the key store {self.path}: {err}") from err
        return token, key

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key whose token this is, else None (unknown or revoked)."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = self._read(
            "SELECT * FROM api_keys WHERE token_sha256 = ? AND revoked_at IS NULL",
            (hash_token(token),),
        )
        return self._with_reads(row)[0] if row else None

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        sql = "SELECT * FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        return self._with_reads(self._read(sql + " ORDER BY created_at, id", ()))

    def get(self, key_id: str) -> ApiKey:
        check_id(key_id, "key id")
        rows = self._read("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if not rows:
            raise NotFoundError(f"no API key {key_id!r}")
        return self._with_reads(rows)[0]

    def _with_reads(self, rows: builtins.list[sqlite3.Row]) -> builtins.list[ApiKey]:
        """Keys of `rows`, each with its read grants."""
        reads: dict[str, builtins.list[str]] = {}
        ids = [row["id"] for row in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for grant in self._read(
                f"SELECT key_id, owner FROM api_key_reads WHERE key_id IN ({marks}) ORDER BY rowid",
                tuple(chunk),
            ):
                reads.setdefault(grant["key_id"], []).append(grant["owner"])
        return [_key(row, tuple(reads.get(row["id"], ()))) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once (the next request with it gets 401); idempotent."""
        self.get(key_id)
        try:
            with self._write() as conn:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (_now().isoformat(), key_id),
                )
        except sqlite3.Error as err:
            raise StoreError(f"cannot write the key store {self.path}: {err}") from err
        return self.get(key_id)

    def _read(self, sql: str, params: tuple[object, ...]) -> builtins.list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the key store {self.path}: {err}") from err

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _grants(owner: str | None, reads: Iterable[str]) -> tuple[str, ...]:
    """Read grants as stored: owners, each once, never the key's own; only bound keys."""
    if isinstance(reads, str) or not isinstance(reads, Iterable):
        raise ValidationError("reads must be a list of owners such as agent:team")
    granted = tuple(dict.fromkeys(parse_owner(cube) for cube in reads))
    if granted and owner is None:
        raise ValidationError("an admin key reads every owner already; give it no reads")
    if owner in granted:
        raise ValidationError(f"a key always reads its own owner ({owner}); grant others")
    return granted


def _key(row: sqlite3.Row, reads: tuple[str, ...] = ()) -> ApiKey:
    revoked_at = row["revoked_at"]
    return ApiKey(
        id=row["id"],
        owner=row["owner"],
        scope=KeyScope(row["scope"]),
        reads=reads,
        created_at=datetime.fromisoformat(row["created_at"]),
        revoked=revoked_at is not None,
        revoked_at=None if revoked_at is None else datetime.fromisoformat(revoked_at),
    )
