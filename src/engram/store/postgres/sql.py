"""Pure functions that build the PostgreSQL store's SQL. User values travel only as bound
parameters, and search words only through plainto_tsquery (never tsquery syntax)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from engram.store.base import MemoryFilter

_OPERATORS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

MEMORY_COLUMNS = (
    "m.key, m.id, m.type, m.state, m.text, m.metadata, m.user_id, m.agent_id, m.session_id, "
    "m.source_id, m.turn_index, m.role, m.name, m.occurred_at, m.source, m.version, "
    "m.created_at, m.updated_at, m.access_count, m.last_accessed_at, m.owner"
)


def _metadata_clause(key: str, condition: dict[str, Any]) -> tuple[str, list[Any]]:
    """One validated condition (engram.scope.check_filters) on a JSONB value: numbers
    compare as numbers, strings as strings; a missing key matches only `$eq: None`."""
    clauses: list[str] = []
    params: list[Any] = []
    for op, value in condition.items():
        if op == "$in":
            clauses.append("(m.metadata -> %s) = ANY(%s::jsonb[])")
            params += [key, [json.dumps(v) for v in value]]
        elif value is None:
            # SQLite's json_extract is NULL for a missing key and for a JSON null alike
            test = "COALESCE(m.metadata -> %s, 'null') = 'null'"
            clauses.append(f"NOT {test}" if op == "$ne" else test)
            params.append(key)
        else:
            clauses.append(f"(m.metadata -> %s) {_OPERATORS[op]} %s::jsonb")
            params += [key, json.dumps(value)]
    return " AND ".join(clauses), params


def filter_clause(flt: MemoryFilter) -> tuple[str, list[Any]]:
    """WHERE conditions (joined with AND, alias `m`) for a filter, plus parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if flt.states:
        clauses.append("m.state = ANY(%s)")
        params.append([s.value for s in flt.states])
    if flt.types:
        clauses.append("m.type = ANY(%s)")
        params.append(list(flt.types))
    if flt.session_id is not None:
        clauses.append("m.session_id = %s")
        params.append(flt.session_id)
    if flt.agent_id is not None:
        clauses.append("m.agent_id = %s")
        params.append(flt.agent_id)
    if flt.since is not None:
        clauses.append("COALESCE(m.occurred_at, m.created_at) >= %s")
        params.append(_aware(flt.since))
    if flt.until is not None:
        clauses.append("COALESCE(m.occurred_at, m.created_at) <= %s")
        params.append(_aware(flt.until))
    for key, condition in flt.metadata.items():
        clause, extra = _metadata_clause(key, condition)
        clauses.append(clause)
        params += extra
    return (" AND ".join(clauses) or "true"), params


def _aware(value: datetime) -> datetime:
    """Naive times are UTC, as everywhere in Engram."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def tsquery(terms: list[str]) -> tuple[str, list[str]]:
    """`plainto_tsquery(a) || plainto_tsquery(b) ...`: any of the words, each parsed as
    plain text (an operator character in a word is just text)."""
    return " || ".join("plainto_tsquery('english', %s)" for _ in terms), list(terms)


def lexical_sql(
    owner: str, cube: int, terms: list[str], k: int, flt: MemoryFilter
) -> tuple[str, list[Any]]:
    where, params = filter_clause(flt)
    query, words = tsquery(terms)
    text = (
        f"SELECT m.key, ts_rank_cd(m.tsv, q.q) AS score FROM memories m, (SELECT {query} AS q) q "
        f"WHERE m.owner = %s AND m.cube_id = %s AND m.tsv @@ q.q AND {where} "
        "ORDER BY score DESC, m.key LIMIT %s"
    )
    return text, [*words, owner, cube, *params, k]


def page_sql(
    owner: str, cube: int, flt: MemoryFilter, limit: int, after: int | None
) -> tuple[str, list[Any]]:
    where, params = filter_clause(flt)
    text = (
        f"SELECT {MEMORY_COLUMNS} FROM memories m "
        f"WHERE m.owner = %s AND m.cube_id = %s AND m.key > %s AND {where} "
        "ORDER BY m.key LIMIT %s"
    )
    return text, [owner, cube, after or 0, *params, limit]


def filtered_keys_sql(owner: str, cube: int, flt: MemoryFilter) -> tuple[str, list[Any]]:
    where, params = filter_clause(flt)
    text = f"SELECT m.key FROM memories m WHERE m.owner = %s AND m.cube_id = %s AND {where}"
    return text + " ORDER BY m.key", [owner, cube, *params]


SNAPSHOT_COLUMNS = (
    "m.key, m.embedding, m.session_id, m.name, COALESCE(m.occurred_at, m.created_at), m.index_text"
)


def candidates_sql(
    owner: str, cube: int, terms: list[str], vector: Any, n: int, ef: int, flt: MemoryFilter
) -> tuple[str, list[Any]]:
    """The rows a search of a large cube scores: its `n` nearest active memories among
    the HNSW index's `ef` nearest of the table, united with the `n` best full-text matches
    of any of `terms` (the GIN index), as snapshot columns in key order.

    The nearest are asked of the whole table, then narrowed to the cube: asked with the
    cube's conditions, the planner read a 100,000-memory owner through its B-tree and
    sorted it by distance (1.5 s in a 300,000-memory store) rather than use the index.
    Row-level security still holds the inner scan to the owner."""
    where, params = filter_clause(flt)
    scope = "m.owner = %s AND m.cube_id = %s AND m.state = 'active'"
    dense = (
        "(SELECT h.key FROM (SELECT m.owner, m.key, m.embedding <=> %s AS d FROM memories m "
        "ORDER BY d LIMIT %s) h JOIN memories m ON m.owner = h.owner AND m.key = h.key "
        f"WHERE {scope} AND {where} ORDER BY h.d LIMIT %s)"
    )
    parts, args = [dense], [vector, ef, owner, cube, *params, n]
    if terms:
        query, words = tsquery(terms)
        parts.append(
            f"(SELECT m.key FROM memories m, (SELECT {query} AS q) q "
            f"WHERE {scope} AND m.tsv @@ q.q AND {where} "
            "ORDER BY ts_rank(m.tsv, q.q) DESC, m.key LIMIT %s)"
        )
        args += [*words, owner, cube, *params, n]
    text = (
        f"SELECT {SNAPSHOT_COLUMNS} FROM memories m WHERE m.owner = %s AND m.cube_id = %s "
        f"AND m.key IN ({' UNION '.join(parts)}) ORDER BY m.key"
    )
    return text, [owner, cube, *args]
