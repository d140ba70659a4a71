"""Pure functions that build SQLite SQL; user text only ever travels as bound parameters."""

from __future__ import annotations

from typing import Any

from engram.store.base import MemoryFilter
from engram.timeutil import iso

_OPERATORS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def quote_fts(term: str) -> str:
    """Quote one term for an FTS5 MATCH expression: never parsed as syntax."""
    return '"' + term.replace('"', '""') + '"'


def match_expression(cube: int, terms: list[str]) -> str:
    """`cube:"cN" AND body:("a" OR "b")`: the cube token keeps one owner's postings only,
    and user terms only ever match the text column."""
    body = " OR ".join(quote_fts(t) for t in terms)
    return f'cube : "c{cube}" AND body : ({body})'


def _metadata_clause(key: str, condition: dict[str, Any]) -> tuple[str, list[Any]]:
    """SQL for one validated condition (see engram.scope.check_filters)."""
    path = f'$."{key}"'
    clauses: list[str] = []
    params: list[Any] = []
    for op, value in condition.items():
        if op == "$in":
            marks = ", ".join("?" for _ in value)
            clauses.append(f"json_extract(m.metadata, ?) IN ({marks})")
            params += [path, *value]
        elif value is None:
            negate = "NOT " if op == "$ne" else ""
            clauses.append(f"json_extract(m.metadata, ?) IS {negate}NULL")
            params.append(path)
        else:
            clauses.append(f"json_extract(m.metadata, ?) {_OPERATORS[op]} ?")
            params += [path, value]
    return " AND ".join(clauses), params


def filter_clause(flt: MemoryFilter) -> tuple[str, list[Any]]:
    """WHERE conditions (joined with AND, alias `m`) for a filter, plus parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if flt.states:
        clauses.append(f"m.state IN ({', '.join('?' for _ in flt.states)})")
        params += [s.value for s in flt.states]
    if flt.types:
        clauses.append(f"m.type IN ({', '.join('?' for _ in flt.types)})")
        params += list(flt.types)
    if flt.session_id is not None:
        clauses.append("m.session_id = ?")
        params.append(flt.session_id)
    if flt.agent_id is not None:
        clauses.append("m.agent_id = ?")
        params.append(flt.agent_id)
    if flt.since is not None:
        clauses.append("COALESCE(m.occurred_at, m.created_at) >= ?")
        params.append(iso(flt.since))
    if flt.until is not None:
        clauses.append("COALESCE(m.occurred_at, m.created_at) <= ?")
        params.append(iso(flt.until))
    for key, condition in flt.metadata.items():
        clause, extra = _metadata_clause(key, condition)
        clauses.append(clause)
        params += extra
    return (" AND ".join(clauses) or "1"), params


MEMORY_COLUMNS = (
    "m.key, m.id, m.type, m.state, m.text, m.metadata, m.user_id, m.agent_id, m.session_id, "
    "m.source_id, m.turn_index, m.role, m.name, m.occurred_at, m.source, m.version, "
    "m.created_at, m.updated_at, m.access_count, m.last_accessed_at, c.owner"
)
FROM_MEMORIES = "memories m JOIN cubes c ON c.id = m.cube_id"


def lexical_sql(cube: int, terms: list[str], k: int, flt: MemoryFilter) -> tuple[str, list[Any]]:
    where, params = filter_clause(flt)
    sql = (
        "SELECT f.rowid, -bm25(memories_fts, 1.0, 0.0) AS score "
        "FROM memories_fts f JOIN memories m ON m.key = f.rowid "
        f"WHERE memories_fts MATCH ? AND m.cube_id = ? AND {where} "
        "ORDER BY bm25(memories_fts, 1.0, 0.0) LIMIT ?"
    )
    return sql, [match_expression(cube, terms), cube, *params, k]


def page_sql(cube: int, flt: MemoryFilter, limit: int, after: int | None) -> tuple[str, list[Any]]:
    where, params = filter_clause(flt)
    sql = (
        f"SELECT {MEMORY_COLUMNS} FROM {FROM_MEMORIES} "
        f"WHERE m.cube_id = ? AND m.key > ? AND {where} ORDER BY m.key LIMIT ?"
    )
    return sql, [cube, after or 0, *params, limit]


def filtered_keys_sql(cube: int, flt: MemoryFilter) -> tuple[str, list[Any]]:
    where, params = filter_clause(flt)
    return f"SELECT m.key FROM memories m WHERE m.cube_id = ? AND {where}", [cube, *params]
