"""Consolidation: what recurs is promoted from working/episodic to long-term memory.

Two signals of recurrence: a memory recalled (cited/used in answers, or reinforced) at
least `min_recalls` times; and a memory with near-duplicates (cosine at least
`duplicate_similarity`) in at least `min_sessions` sessions of the owner, its own
included: the user said the same thing in several conversations.
"""

from __future__ import annotations

import numpy as np

from engram.store.vector_index import CubeSnapshot

_CHUNK = 256  # candidate rows per similarity block: (256 x n) float32 at a time


def recurring_sessions(
    snapshot: CubeSnapshot, keys: list[int], similarity: float, min_words: int = 0
) -> dict[int, int]:
    """For each of `keys` (in the snapshot, in a session, of at least `min_words` words)
    the number of distinct sessions holding it or a near-duplicate of it, when that is
    at least 2."""
    n_sessions = len(snapshot.session_ids)
    rows = _present(snapshot, keys)
    rows = rows[snapshot.sessions[rows] >= 0]
    rows = np.array([r for r in rows if len(snapshot.texts[r].split()) >= min_words], np.int64)
    if n_sessions < 2 or not len(rows):
        return {}
    found: dict[int, int] = {}
    for start in range(0, len(rows), _CHUNK):
        block = rows[start : start + _CHUNK]
        near_row, near_col = np.nonzero(snapshot.matrix[block] @ snapshot.matrix.T >= similarity)
        seen = np.zeros((len(block), n_sessions), dtype=bool)
        seen[np.arange(len(block)), snapshot.sessions[block]] = True  # its own session
        sessions = snapshot.sessions[near_col]
        keep = sessions >= 0
        seen[near_row[keep], sessions[keep]] = True
        counts = seen.sum(axis=1)
        for i in np.nonzero(counts >= 2)[0]:
            found[int(snapshot.keys[block[i]])] = int(counts[i])
    return found


def _present(snapshot: CubeSnapshot, keys: list[int]) -> np.ndarray:
    wanted = np.asarray(keys, dtype=np.int64)
    rows = np.searchsorted(snapshot.keys, wanted)
    ok = rows < len(snapshot.keys)
    ok[ok] = snapshot.keys[rows[ok]] == wanted[ok]
    return rows[ok]
