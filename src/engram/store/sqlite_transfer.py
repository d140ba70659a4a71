"""The SQLite side of `engram migrate --to sqlite:///...` and of cube bundle imports: writes
one owner's neutral `OwnerDump` (engram.store.migrate) in a single `BEGIN IMMEDIATE`
transaction, with the file's own keys (memory ids, versions and times are kept), and reads
owners back through `SQLiteReader` to verify the copy."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram.errors import StoreError
from engram.store.migrate import OwnerDump, Row, SQLiteReader, payload_in

if TYPE_CHECKING:
    from engram.bundle.merge import OwnerMerge


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
        self._write(dump.owner, lambda: _load(self.conn, dump))

    def merge(self, dump: OwnerDump) -> OwnerMerge:
        """Add what `dump` brings to its owner (engram.bundle.merge), planned, written and
        read back in one transaction: the change made, all or nothing."""
        from engram.bundle.merge import check_merged, plan_merge

        done: list[OwnerMerge] = []

        def write() -> None:
            merge = plan_merge(self._dump(dump.owner), dump)
            if not merge.empty:
                _apply(self.conn, merge)
                check_merged(merge, self._dump(dump.owner), self.where)
            done.append(merge)

        self._write(dump.owner, write)
        return done[0]

    def _write(self, owner: str, write: Callable[[], None]) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StoreError(f"cannot write {self.where}: {err}") from err
        try:
            write()
        except sqlite3.Error as err:
            self.conn.execute("ROLLBACK")
            raise StoreError(f"cannot write owner {owner!r} to {self.where}: {err}") from err
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def _load(conn: sqlite3.Connection, dump: OwnerDump) -> None:
    _owner_rows(conn, dump.owner, dump.tables)
    if dump.tables["cubes"]:
        _cube_rows(conn, _new_cube(conn, dump), dump.tables, {}, {})


def _apply(conn: sqlite3.Connection, merge: OwnerMerge) -> None:
    t = merge.new.tables
    _owner_rows(conn, merge.owner, t)
    row = conn.execute("SELECT id FROM cubes WHERE owner = ?", (merge.owner,)).fetchone()
    if row is None and not t["cubes"]:
        return
    cube: int = row[0] if row is not None else _new_cube(conn, merge.new)
    keys = dict(conn.execute("SELECT id, key FROM memories WHERE cube_id = ?", (cube,)))
    queries = dict(
        enumerate(
            r[0]
            for r in conn.execute(
                "SELECT id FROM feedback_queries WHERE cube_id = ? ORDER BY id", (cube,)
            )
        )
    )
    for r in merge.changed:
        conn.execute(
            "UPDATE memories SET type = ?, state = ?, text = ?, metadata = ?, user_id = ?, "
            "agent_id = ?, session_id = ?, source_id = ?, turn_index = ?, role = ?, name = ?, "
            "occurred_at = ?, source = ?, version = ?, created_at = ?, updated_at = ?, "
            "access_count = ?, last_accessed_at = ?, strength = ?, last_recalled_at = ?, "
            "recall_count = ?, pinned = ?, expires_at = ?, tier = ?, embedding = ? "
            "WHERE key = ?",
            (*r[1:4], r[5] or "{}", *r[6:23], int(r[23]), *r[24:], keys[r[0]]),
        )
        conn.execute("UPDATE memories_fts SET body = ? WHERE rowid = ?", (r[4], keys[r[0]]))
    if merge.drop_reranker:
        conn.execute("DELETE FROM rerankers WHERE cube_id = ?", (cube,))
    conn.executemany(
        "DELETE FROM retention_policies WHERE cube_id = ? AND type = ?",
        [(cube, kind) for kind in merge.drop_policies],
    )
    _cube_rows(conn, cube, t, keys, queries)
    conn.execute(
        "UPDATE cubes SET rev = rev + 1, feedback_rev = feedback_rev + ? WHERE id = ?",
        (1 if t["feedback"] or merge.drop_reranker else 0, cube),
    )


def _owner_rows(conn: sqlite3.Connection, owner: str, t: dict[str, list[Row]]) -> None:
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


def _new_cube(conn: sqlite3.Connection, dump: OwnerDump) -> int:
    t = dump.tables
    cube: int = conn.execute(
        "INSERT INTO cubes (owner, created_at, rev, feedback_rev) VALUES (?, ?, ?, ?) RETURNING id",
        (dump.owner, t["cubes"][0][0], 1 if t["memories"] else 0, 1 if t["feedback"] else 0),
    ).fetchone()[0]
    return cube


def _cube_rows(
    conn: sqlite3.Connection,
    cube: int,
    t: dict[str, list[Row]],
    keys: dict[str, int],
    queries: dict[int, int],
) -> None:
    """The cube's rows of `t`; `keys` (memory id -> key) and `queries` (ordinal -> id) of
    rows held already, extended with those inserted."""
    keys.update(_insert_memories(conn, cube, t["memories"]))
    conn.executemany(
        "INSERT INTO versions (memory_key, version, event, text, metadata, reason, source, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(keys[r[0]], *r[1:4], r[4] or "{}", *r[5:]) for r in t["versions"]],
    )
    for q in t["feedback_queries"]:
        queries[q[0]] = conn.execute(
            "INSERT INTO feedback_queries (cube_id, query, vector, at) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (cube, q[1], q[2], q[3]),
        ).fetchone()[0]
    conn.executemany(
        "INSERT INTO feedback (query_id, memory_key, label) VALUES (?, ?, ?)",
        [(queries[r[0]], keys[r[1]], r[2]) for r in t["feedback"]],
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
