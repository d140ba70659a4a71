"""Search candidates of a large cube, found by the database: the nearest memories by the
HNSW index on `embedding` united with the best full-text matches (tsvector + GIN), one
owner-scoped query. They come back as a small `CubeSnapshot` (keys ascending), so every
hybrid signal is computed on the candidates exactly as on a whole cube.

Signals over a neighbourhood (a window of turns, a whole session) and per-cube BM25
statistics then see only the candidates; cubes up to `postgres.exact_search_max` memories
keep the exact in-process path (docs/postgres.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engram.store.base import MemoryFilter
from engram.store.postgres import sql
from engram.store.postgres.conn import Database
from engram.store.postgres.memories import as_array, stored_vector
from engram.store.postgres.snapshots import epoch_days
from engram.store.vector_index import CubeSnapshot, SnapshotRow, build_snapshot

CANDIDATE_REV = -1  # a candidate snapshot belongs to one query, never to the cache


def fetch_candidates(
    db: Database,
    owner: str,
    cube: int,
    terms: list[str],
    vector: np.ndarray,
    n: int,
    ef_search: int,
    flt: MemoryFilter,
) -> CubeSnapshot:
    """Up to 2 * `n` candidate rows of one cube for the query's words (bound parameters
    of plainto_tsquery, never tsquery syntax) and its unit `vector`."""
    ef = max(ef_search, n)  # the index's neighbours of every owner, before the owner filter
    text, params = sql.candidates_sql(owner, cube, terms, stored_vector(vector), n, ef, flt)
    with db.tx(owner) as cur:
        cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        # planned for its own owner and limits (conn.py: force_custom_plan); a generic plan
        # sorted the whole table by distance (1.5 s a search in a 300,000-memory store)
        cur.execute(text, params, binary=True)
        rows: list[Any] = cur.fetchall()
    return build_snapshot(
        CANDIDATE_REV,
        [SnapshotRow(r[0], as_array(r[1]), r[2], r[3], epoch_days(r[4]), r[5]) for r in rows],
        len(vector),
    )
