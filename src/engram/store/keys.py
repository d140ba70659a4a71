"""API keys: random bearer tokens stored as SHA-256 hashes, in the store's database.

A key is bound to one owner ('user:alice', 'agent:bot') and a scope: `read` (get, list,
search), `write` (also add, update, archive, restore, erase) or `admin` (every owner; an
admin key has no owner). A bound key may also be granted reading other owners' cubes
(`reads`): it then reads them where its owner mounts them (docs/compose.md), never writes
them. The token itself is shown once, when the key is created; the store keeps only its
hash, so a stolen key table does not give access.

`KeyStore` holds the rules once; a backend gives it four primitives. With SQLite (the
embedded default) keys live in `$ENGRAM_HOME/keys.db`, a file of their own; with
PostgreSQL they live in the database (`api_keys`, `api_key_reads`), so every server on it
authenticates the same keys. `open_keys(config)` picks the one a config names.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from engram.errors import NotFoundError, ValidationError
from engram.extras import require_extra
from engram.scope import Scope, check_id

if TYPE_CHECKING:
    from engram.config import EngramConfig

TOKEN_PREFIX = "egk_"
KEY_COLUMNS = "id, token_sha256, owner, scope, created_at, revoked_at"  # every backend's


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


def parse_owner(owner: object) -> str:
    """'alice' or 'user:alice' -> 'user:alice'; 'agent:bot' stays. Checked like user ids."""
    return Scope.parse(owner, "owner", bare_user=True)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class KeyStore(ABC):
    """The key rules (validation, hashing, revocation) over a backend's four primitives:
    `_insert` a key with its grants, `_select` keys (by id, by token hash, or all),
    `_grants` of some keys, `_set_revoked`. Subclasses raise StoreError for driver errors."""

    where: str  # for messages: the file or database holding the keys

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
        self.insert(key, hash_token(token))
        return token, key

    def insert(self, key: ApiKey, token_sha256: str) -> bool:
        """Store `key` as it is (a copy from another key store keeps its id, hash, times
        and grants); False when a key with its id is there already (nothing written)."""
        return self._insert(key, token_sha256)

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key whose token this is, else None (unknown or revoked)."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        rows = self._select("token_sha256", hash_token(token))
        keys = [key for key in self._with_reads(rows) if not key.revoked]
        return keys[0] if keys else None

    def list(self, include_revoked: bool = True) -> builtins.list[ApiKey]:
        keys = self._with_reads(self._select(None, None))
        return [key for key in keys if include_revoked or not key.revoked]

    def hashes(self) -> dict[str, str]:
        """Key id -> token hash, for copying keys to another store (`engram migrate`)."""
        return {row.id: row.token_sha256 for row in self._select(None, None)}

    def get(self, key_id: str) -> ApiKey:
        check_id(key_id, "key id")
        rows = self._select("id", key_id)
        if not rows:
            raise NotFoundError(f"no API key {key_id!r}")
        return self._with_reads(rows)[0]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key at once (the next request with it gets 401); idempotent."""
        self.get(key_id)
        self._set_revoked(key_id, _now())
        return self.get(key_id)

    def _with_reads(self, rows: builtins.list[KeyRow]) -> builtins.list[ApiKey]:
        """Keys of `rows` (ordered by creation), each with its read grants."""
        reads = self._grants([row.id for row in rows])
        ordered = sorted(rows, key=lambda row: (row.created_at, row.id))
        return [row.key(tuple(reads.get(row.id, ()))) for row in ordered]

    @abstractmethod
    def _insert(self, key: ApiKey, token_sha256: str) -> bool:
        """Write the key row and its grant rows in one transaction; False (nothing
        written) when its id is taken."""

    @abstractmethod
    def _select(self, column: str | None, value: str | None) -> builtins.list[KeyRow]:
        """Key rows where `column` ('id' or 'token_sha256') equals `value`; all for None."""

    @abstractmethod
    def _grants(self, key_ids: builtins.list[str]) -> dict[str, builtins.list[str]]:
        """Key id -> granted owners, in the order granted."""

    @abstractmethod
    def _set_revoked(self, key_id: str, at: datetime) -> None:
        """Set the revocation time of a key that has none."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class KeyRow:
    """One api_keys row as a backend read it."""

    id: str
    token_sha256: str
    owner: str | None
    scope: str
    created_at: datetime
    revoked_at: datetime | None

    def key(self, reads: tuple[str, ...]) -> ApiKey:
        return ApiKey(
            id=self.id,
            owner=self.owner,
            scope=KeyScope(self.scope),
            reads=reads,
            created_at=self.created_at,
            revoked=self.revoked_at is not None,
            revoked_at=self.revoked_at,
        )


def open_keys(config: EngramConfig) -> KeyStore:
    """The key store of the store a config names: PostgreSQL's tables for a
    postgresql:// database_url, else `$ENGRAM_HOME/keys.db`."""
    url = config.database_url
    if url and url.startswith(("postgresql://", "postgres://")):
        require_extra("postgres", "API keys in PostgreSQL")
        from engram.store.postgres.keys import PostgresKeyStore

        pg = config.postgres
        return PostgresKeyStore(url, app_role=pg.app_role, timeout_s=pg.connect_timeout_s)
    from engram.store.sqlite_keys import SQLiteKeyStore

    return SQLiteKeyStore(config.home / "keys.db")


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


def key_column(column: str) -> str:
    """A column keys are selected by (`KeyStore._select`), checked before it enters SQL."""
    if column not in ("id", "token_sha256"):
        raise ValueError(f"keys are selected by id or token_sha256, not {column!r}")
    return column
