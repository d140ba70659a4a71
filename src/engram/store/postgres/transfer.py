"""The PostgreSQL side of `engram migrate` (engram.store.migrate): reads one owner into the
neutral `OwnerDump` layout and writes one in a single owner-scoped transaction, with the
target's own keys (memory ids, versions and times are kept)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from psycopg import Cursor
from psycopg.types.json import Jsonb

from engram.store.migrate import OwnerDump, Row, js, payload_in, payload_out, to_datetime, ts
from engram.store.postgres.conn import ALL_OWNERS
from engram.store.postgres.memories import as_array

if TYPE_CHECKING:
    from engram.bundle.merge import OwnerMerge

Cur = Cursor[Any]


def _f16(value: Any) -> bytes:
    """A stored vector as float16 bytes (stored vectors are float16-exact)."""
    return as_array(value).astype(np.float16).tobytes()


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float16).astype(np.float32)


def _json(text: str | None) -> Jsonb | None:
    return None if text is None else Jsonb(json.loads(text))


class PostgresTransfer:
    """Reads and writes whole owners of one PostgreSQL database (migrating it first)."""

    def __init__(self, url: str) -> None:
        from engram.store.postgres.store import PostgresStore

        self.store = PostgresStore(url, None, max_size=2)
        self.db = self.store.db
        self.where = self.store.where

    def embedder(self) -> tuple[str, int] | None:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute("SELECT key, value FROM meta WHERE key LIKE 'embedder.%%'")
            rows = dict(cur.fetchall())
        return None if not rows else (rows["embedder.name"], int(rows["embedder.dim"]))

    def set_embedder(self, name: str, dim: int) -> None:
        self.store.check_embedder(name, dim)

    def owners(self) -> list[str]:
        with self.db.tx(ALL_OWNERS) as cur:
            cur.execute(
                "SELECT owner FROM cubes UNION SELECT owner FROM idempotency_keys "
                "UNION SELECT owner FROM tier_artifacts"
            )
            return sorted(r[0] for r in cur.fetchall())

    def close(self) -> None:
        self.store.close()

    # -- reading ----------------------------------------------------------------------

    def dump(self, owner: str) -> OwnerDump:
        with self.db.tx(owner, snapshot=True) as cur:
            return _dump(cur, owner)

    # -- writing ----------------------------------------------------------------------

    def load(self, dump: OwnerDump) -> None:
        """Write one owner (absent from this database) in one transaction."""
        with self.db.tx(dump.owner) as cur:
            _load(cur, dump)

    def merge(self, dump: OwnerDump) -> OwnerMerge:
        """Add what `dump` brings to its owner (engram.bundle.merge), planned, written and
        read back in one transaction (the owner's cube row locked): the change made, all or
        nothing."""
        from engram.bundle.merge import check_merged, plan_merge

        with self.db.tx(dump.owner) as cur:
            cur.execute("SELECT id FROM cubes WHERE owner = %s FOR UPDATE", (dump.owner,))
            merge = plan_merge(_dump(cur, dump.owner), dump)
            if not merge.empty:
                _apply(cur, merge)
                check_merged(merge, _dump(cur, dump.owner), self.where)
        return merge


def _rows(cur: Cur, query: str, params: tuple[Any, ...]) -> list[Row]:
    cur.execute(query, params)
    return [tuple(r) for r in cur.fetchall()]


def _dump(cur: Cur, owner: str) -> OwnerDump:
    out = OwnerDump(owner)
    t = out.tables
    t["idempotency_keys"] = [
        (r[0], r[1], r[2], r[3], r[4], ts(r[5]), ts(r[6]))
        for r in _rows(
            cur,
            "SELECT key, fingerprint, state, status, response, started_at, expires_at "
            'FROM idempotency_keys WHERE owner = %s ORDER BY key COLLATE "C"',
            (owner,),
        )
    ]
    t["tier_artifacts"] = [
        (r[0], r[1], r[2], r[3], ts(r[4]))
        for r in _rows(
            cur,
            "SELECT tier, artifact, memory_id, memory_version, created_at FROM tier_artifacts "
            'WHERE owner = %s ORDER BY tier COLLATE "C", artifact COLLATE "C", '
            'memory_id COLLATE "C"',
            (owner,),
        )
    ]
    cube = _rows(cur, "SELECT id, created_at FROM cubes WHERE owner = %s", (owner,))
    if not cube:
        return out
    cid = cube[0][0]
    t["cubes"] = [(ts(cube[0][1]),)]
    rows = _rows(
        cur,
        "SELECT key, id, type, state, text, index_text, metadata, user_id, agent_id, "
        "session_id, source_id, turn_index, role, name, occurred_at, source, version, "
        "created_at, updated_at, access_count, last_accessed_at, strength, last_recalled_at, "
        "recall_count, pinned, expires_at, tier, embedding FROM memories "
        "WHERE owner = %s AND cube_id = %s ORDER BY key",
        (owner, cid),
    )
    ids = {r[0]: r[1] for r in rows}
    t["memories"] = [
        (*r[1:6], js(r[6]), *r[7:14], ts(r[14]), r[15], r[16], ts(r[17]), ts(r[18]), r[19],
         ts(r[20]), r[21], ts(r[22]), r[23], bool(r[24]), ts(r[25]), r[26], _f16(r[27]))
        for r in rows
    ]  # fmt: skip
    t["versions"] = [
        (ids[r[0]], r[1], r[2], r[3], js(r[4]), r[5], r[6], ts(r[7]))
        for r in _rows(
            cur,
            "SELECT v.memory_key, v.version, v.event, v.text, v.metadata, v.reason, v.source, "
            "v.at FROM versions v JOIN memories m ON m.owner = v.owner AND m.key = v.memory_key "
            "WHERE v.owner = %s AND m.cube_id = %s ORDER BY v.memory_key, v.version",
            (owner, cid),
        )
    ]
    queries = _rows(
        cur,
        "SELECT id, query, vector, at FROM feedback_queries WHERE owner = %s AND cube_id = %s "
        "ORDER BY id",
        (owner, cid),
    )
    ordinal = {q[0]: n for n, q in enumerate(queries)}
    t["feedback_queries"] = [(ordinal[q[0]], q[1], _f16(q[2]), ts(q[3])) for q in queries]
    t["feedback"] = [
        (ordinal[r[0]], ids[r[1]], r[2])
        for r in _rows(
            cur,
            "SELECT f.query_id, f.memory_key, f.label FROM feedback f JOIN feedback_queries q "
            "ON q.owner = f.owner AND q.id = f.query_id WHERE f.owner = %s AND q.cube_id = %s "
            "ORDER BY f.query_id, f.memory_key",
            (owner, cid),
        )
    ]
    t["rerankers"] = [
        (js(r[0]), r[1], ts(r[2]))
        for r in _rows(
            cur,
            "SELECT weights, events, updated_at FROM rerankers WHERE owner = %s AND cube_id = %s",
            (owner, cid),
        )
    ]
    t["retention_policies"] = [
        (r[0], js(r[1]), ts(r[2]))
        for r in _rows(
            cur,
            "SELECT type, policy, updated_at FROM retention_policies "
            'WHERE owner = %s AND cube_id = %s ORDER BY type COLLATE "C"',
            (owner, cid),
        )
    ]
    t["jobs"] = [
        (r[0], r[1], r[2], payload_out(r[3], ids), r[4], r[5], r[6], ts(r[7]), ts(r[8]), r[9],
         js(r[10]), ts(r[11]), ts(r[12]))
        for r in _rows(
            cur,
            "SELECT session_key, extractor, input_hash, payload, state, attempts, max_attempts, "
            "not_before, lease_until, error, result, created_at, updated_at FROM jobs "
            "WHERE owner = %s AND cube_id = %s ORDER BY id",
            (owner, cid),
        )
    ]  # fmt: skip
    return out


def _returned(cur: Cur) -> list[int]:
    """The first column of every result an `executemany(..., returning=True)` left."""
    out: list[int] = []
    while True:
        out += [row[0] for row in cur.fetchall()]
        if not cur.nextset():
            return out


def _memory_values(r: Row) -> tuple[Any, ...]:
    """A neutral memory row as the values of the memories columns, id to embedding."""
    return (*r[:5], _json(r[5]), *r[6:13], to_datetime(r[13]), r[14], r[15],
            to_datetime(r[16]), to_datetime(r[17]), r[18], to_datetime(r[19]), r[20],
            to_datetime(r[21]), r[22], r[23], to_datetime(r[24]), r[25], _vec(r[26]))  # fmt: skip


def _insert_memories(cur: Cur, owner: str, cube: int, rows: list[Row]) -> dict[str, int]:
    """Insert memory rows; returns their new keys by memory id."""
    if not rows:
        return {}
    cur.executemany(  # pipelined, in the source's key order: the new keys keep it
        "INSERT INTO memories (owner, cube_id, id, type, state, text, index_text, metadata, "
        "user_id, agent_id, session_id, source_id, turn_index, role, name, occurred_at, "
        "source, version, created_at, updated_at, access_count, last_accessed_at, "
        "strength, last_recalled_at, recall_count, pinned, expires_at, tier, embedding) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING key",
        [(owner, cube, *_memory_values(r)) for r in rows],
        returning=True,
    )
    return {r[0]: key for r, key in zip(rows, _returned(cur), strict=True)}


def _load(cur: Cur, dump: OwnerDump) -> None:
    _owner_rows(cur, dump.owner, dump.tables)
    if dump.tables["cubes"]:
        _cube_rows(cur, dump.owner, _new_cube(cur, dump), dump.tables, {}, {})


def _apply(cur: Cur, merge: OwnerMerge) -> None:
    owner, t = merge.owner, merge.new.tables
    _owner_rows(cur, owner, t)
    found = _rows(cur, "SELECT id FROM cubes WHERE owner = %s", (owner,))
    if not found and not t["cubes"]:
        return
    cube: int = found[0][0] if found else _new_cube(cur, merge.new)
    query = "SELECT id, key FROM memories WHERE owner = %s AND cube_id = %s"
    keys: dict[str, int] = {r[0]: r[1] for r in _rows(cur, query, (owner, cube))}
    query = "SELECT id FROM feedback_queries WHERE owner = %s AND cube_id = %s ORDER BY id"
    queries = dict(enumerate(r[0] for r in _rows(cur, query, (owner, cube))))
    cur.executemany(
        "UPDATE memories SET type = %s, state = %s, text = %s, index_text = %s, metadata = %s, "
        "user_id = %s, agent_id = %s, session_id = %s, source_id = %s, turn_index = %s, "
        "role = %s, name = %s, occurred_at = %s, source = %s, version = %s, created_at = %s, "
        "updated_at = %s, access_count = %s, last_accessed_at = %s, strength = %s, "
        "last_recalled_at = %s, recall_count = %s, pinned = %s, expires_at = %s, tier = %s, "
        "embedding = %s WHERE owner = %s AND key = %s",
        [(*_memory_values(r)[1:], owner, keys[r[0]]) for r in merge.changed],
    )
    if merge.drop_reranker:
        cur.execute("DELETE FROM rerankers WHERE owner = %s AND cube_id = %s", (owner, cube))
    cur.executemany(
        "DELETE FROM retention_policies WHERE owner = %s AND cube_id = %s AND type = %s",
        [(owner, cube, kind) for kind in merge.drop_policies],
    )
    _cube_rows(cur, owner, cube, t, keys, queries)
    cur.execute(
        "UPDATE cubes SET rev = rev + 1, feedback_rev = feedback_rev + %s "
        "WHERE owner = %s AND id = %s",
        (1 if t["feedback"] or merge.drop_reranker else 0, owner, cube),
    )


def _owner_rows(cur: Cur, owner: str, t: dict[str, list[Row]]) -> None:
    cur.executemany(
        "INSERT INTO idempotency_keys (owner, key, fingerprint, state, status, response, "
        "started_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [(owner, *r[:5], to_datetime(r[5]), to_datetime(r[6])) for r in t["idempotency_keys"]],
    )
    cur.executemany(
        "INSERT INTO tier_artifacts (owner, tier, artifact, memory_id, memory_version, "
        "created_at) VALUES (%s, %s, %s, %s, %s, %s)",
        [(owner, *r[:4], to_datetime(r[4])) for r in t["tier_artifacts"]],
    )


def _new_cube(cur: Cur, dump: OwnerDump) -> int:
    cur.execute(
        "INSERT INTO cubes (owner, created_at) VALUES (%s, %s) RETURNING id",
        (dump.owner, to_datetime(dump.tables["cubes"][0][0])),
    )
    cube: int = cur.fetchone()[0]  # type: ignore[index]
    return cube


def _cube_rows(
    cur: Cur,
    owner: str,
    cube: int,
    t: dict[str, list[Row]],
    keys: dict[str, int],
    queries: dict[int, int],
) -> None:
    """The cube's rows of `t`; `keys` (memory id -> key) and `queries` (ordinal -> id) of
    rows held already, extended with those inserted."""
    keys.update(_insert_memories(cur, owner, cube, t["memories"]))
    cur.executemany(
        "INSERT INTO versions (owner, memory_key, version, event, text, metadata, reason, "
        "source, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (owner, keys[r[0]], r[1], r[2], r[3], _json(r[4]), r[5], r[6], to_datetime(r[7]))
            for r in t["versions"]
        ],
    )
    for q in t["feedback_queries"]:
        cur.execute(
            "INSERT INTO feedback_queries (owner, cube_id, query, vector, at) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (owner, cube, q[1], _vec(q[2]), to_datetime(q[3])),
        )
        queries[q[0]] = cur.fetchone()[0]  # type: ignore[index]
    cur.executemany(
        "INSERT INTO feedback (owner, query_id, memory_key, label) VALUES (%s, %s, %s, %s)",
        [(owner, queries[r[0]], keys[r[1]], r[2]) for r in t["feedback"]],
    )
    cur.executemany(
        "INSERT INTO rerankers (owner, cube_id, weights, events, updated_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        [(owner, cube, _json(r[0]), r[1], to_datetime(r[2])) for r in t["rerankers"]],
    )
    cur.executemany(
        "INSERT INTO retention_policies (owner, cube_id, type, policy, updated_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        [(owner, cube, r[0], _json(r[1]), to_datetime(r[2])) for r in t["retention_policies"]],
    )
    cur.executemany(
        "INSERT INTO jobs (owner, cube_id, session_key, extractor, input_hash, payload, state, "
        "attempts, max_attempts, not_before, lease_until, error, result, created_at, "
        "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (owner, cube, r[0], r[1], r[2], Jsonb(payload_in(r[3], keys)), r[4], r[5], r[6],
             to_datetime(r[7]), to_datetime(r[8]), r[9], _json(r[10]), to_datetime(r[11]),
             to_datetime(r[12]))
            for r in t["jobs"]
        ],
    )  # fmt: skip
