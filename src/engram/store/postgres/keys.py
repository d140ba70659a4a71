"""API keys in the PostgreSQL database (migration 0005_api_keys): every server on it
authenticates the same keys, and a key revoked through one is refused by all at once.

A key is found by its token's hash before its owner is known, so each statement runs
scoped to every owner (the tables have no row-level security; they hold hashes only)."""

from __future__ import annotations

import builtins
from datetime import datetime

from engram.store.keys import KEY_COLUMNS, ApiKey, KeyRow, KeyStore, key_column
from engram.store.postgres import schema
from engram.store.postgres.conn import ALL_OWNERS, Database, describe


class PostgresKeyStore(KeyStore):
    """Keys in the `api_keys` and `api_key_reads` tables, through a small pool."""

    def __init__(self, url: str, *, app_role: str = "engram_app", timeout_s: float = 30.0):
        self.where = describe(url)
        schema.prepare(url, self.where, app_role, timeout_s, None)
        self.db = Database(url, app_role, 1, 4, timeout_s)

    def _insert(self, key: ApiKey, token_sha256: str) -> bool:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (key.id, token_sha256, key.owner, key.scope.value, key.created_at, key.revoked_at),
            )
            if not cur.rowcount:
                return False
            cur.executemany(
                "INSERT INTO api_key_reads (key_id, owner) VALUES (%s, %s)",
                [(key.id, cube) for cube in key.reads],
            )
        return True

    def _select(self, column: str | None, value: str | None) -> builtins.list[KeyRow]:
        where = "" if column is None else f" WHERE {key_column(column)} = %s"
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys{where}", () if value is None else (value,)
            )
            return [KeyRow(*row) for row in cur.fetchall()]

    def _grants(self, key_ids: builtins.list[str]) -> dict[str, builtins.list[str]]:
        reads: dict[str, builtins.list[str]] = {}
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute(
                "SELECT key_id, owner FROM api_key_reads WHERE key_id = ANY(%s) ORDER BY seq",
                (key_ids,),
            )
            for key_id, owner in cur.fetchall():
                reads.setdefault(key_id, []).append(owner)
        return reads

    def _set_revoked(self, key_id: str, at: datetime) -> None:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (at, key_id),
            )

    def close(self) -> None:
        self.db.close()
