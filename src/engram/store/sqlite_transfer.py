"""The SQLite side of `engram migrate --to sqlite:///...` and of cube bundle imports: writes
one owner's neutral `OwnerDump` (engram.store.migrate) in a single `BEGIN IMMEDIATE`
transaction, with the file's own keys (memory ids, versions and times are kept), and reads
owners back through `SQLiteReader` to verify the copy."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from engram.errors import StoreError
from engram.store.migrate import OwnerDump, Row, SQLiteReader, payload_in


def _cube_tag(cube: int) -> str:
    return f"c{cube}"  # the FTS `cube` column, as SQLiteStore writes it


class SQLiteTransfer(SQLiteReader):
    """Reads and writes whole owners of one SQLite store file (created and migrated to this
    Engram's schema first)."""

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        from engram.store.sqlite import SQLiteStore

        self.path = path
        self.where = f"sqlite:///{path}"
        SQLiteStore(path, None).close()  # creates the file, or brings its schema up to date
        try:
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the SQLite store {path}: {err}") from err

    def set_embedder(self, name: str, dim: int) -> None:
        from engram.store.sqlite import SQLiteStore

        store = SQLiteStore(self.path, None)
        try:
            store.check_embedder(name, dim)  # EmbedderMismatchError when another is recorded
        finally:
            store.close()

    def load(self, dump: OwnerDump) -> None:
        """Write one owner (absent from this file) in one transaction: all or nothing."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StoreError(f"cannot write {self.where}: {err}") from err
        try:
            _load(self.conn, dump)
        except sqlite3.Error as err:
            self.conn.execute("ROLLBACK")
            raise StoreError(f"cannot write owner {dump.owner!r} to {self.where}: {err}") from err
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def _load(conn: sqlite3.Connection, dump: OwnerDump) -> None:
    owner, t = dump.owner, dump.tables
    conn.executemany(
        "INSERT INTO idempotency_keys (owner, key, fingerprint, state, status, response, "
        "started_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(owner, *r) for r in t["idempotency_keys"]],
    )
    conn.executemany(
        "INSERT INTO tier_artifacts (tier, owner, artifact, memory_id, memory_version, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(r[0], owner, *r[1:]) for r in t["tier_artifacts"]],
    )
    if not t["cubes"]:
        return
    cube: int = conn.execute(
        "INSERT INTO cubes (owner, created_at, rev, feedback_rev) VALUES (?, ?, ?, ?) RETURNING id",
        (owner, t["cubes"][0][0], 1 if t["memories"] else 0, 1 if t["feedback"] else 0),
    ).fetchone()[0]
    keys = _insert_memories(conn, cube, t["memories"])
    conn.executemany(
        "INSERT INTO versions (memory_key, version, event, text, metadata, reason, source, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(keys[r[0]], *r[1:4], r[4] or "{}", *r[5:]) for r in t["versions"]],
    )
    query_ids: dict[int, int] = {}
    for q in t["feedback_queries"]:
        query_ids[q[0]] = conn.execute(
            "INSERT INTO feedback_queries (cube_id, query, vector, at) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (cube, q[1], q[2], q[3]),
        ).fetchone()[0]
    conn.executemany(
        "INSERT INTO feedback (query_id, memory_key, label) VALUES (?, ?, ?)",
        [(query_ids[r[0]], keys[r[1]], r[2]) for r in t["feedback"]],
    )
    conn.executemany(
        "INSERT INTO rerankers (cube_id, weights, events, updated_at) VALUES (?, ?, ?, ?)",
        [(cube, *r) for r in t["rerankers"]],
    )
    conn.executemany(
        "INSERT INTO retention_policies (cube_id, type, policy, updated_at) VALUES (?, ?, ?, ?)",
        [(cube, *r) for r in t["retention_policies"]],
    )
    conn.executemany(
        "INSERT INTO jobs (cube_id, session_key, extractor, input_hash, payload, state, "
        "attempts, max_attempts, not_before, lease_until, error, result, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(cube, *r[:3], _text(payload_in(r[3], keys)), *r[4:]) for r in t["jobs"]],
    )


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _insert_memories(conn: sqlite3.Connection, cube: int, rows: list[Row]) -> dict[str, int]:
    """Memory rows and their FTS entries, in the source's key order (the new keys keep
    it); returns the new keys by memory id."""
    keys: dict[str, int] = {}
    for r in rows:
        key: int = conn.execute(
            "INSERT INTO memories (id, cube_id, type, state, text, metadata, user_id, agent_id, "
            "session_id, source_id, turn_index, role, name, occurred_at, source, version, "
            "created_at, updated_at, access_count, last_accessed_at, strength, "
            "last_recalled_at, recall_count, pinned, expires_at, tier, embedding) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING key",
            (r[0], cube, *r[1:4], r[5] or "{}", *r[6:23], int(r[23]), *r[24:]),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO memories_fts (rowid, body, cube) VALUES (?, ?, ?)",
            (key, r[4], _cube_tag(cube)),
        )
        keys[r[0]] = key
    return keys
