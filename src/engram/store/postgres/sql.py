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
