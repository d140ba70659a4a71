"""In-process snapshot of one cube's active memories: vectors plus the structure that
retrieval strategies use (sessions, neighbours in a session, speakers).

Exact dense search is a float32 matmul: chosen by measurement (docs/benchmarks.md) over
faiss and sqlite-vec for cubes up to ~10^5 memories on 2 cores. A snapshot is a cache of
the database: each cube carries a revision bumped by every write, so a write from another
process or connection is seen on the next search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class CubeSnapshot:
    rev: int
    keys: np.ndarray  # int64, sorted ascending
    matrix: np.ndarray  # float32 (n, dim), unit rows
    sessions: np.ndarray  # int64 code per row, -1 without a session
    speakers: np.ndarray  # object: lower-cased speaker name per row, "" when none
    times: np.ndarray  # float64 days since 1970-01-01 (the memory's time, else when stored)
    texts: list[str]  # index text per row
    session_ids: list[str] = field(default_factory=list)  # code -> session_id
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Structures retrieval strategies build from this snapshot (rebuilt with it)."""
    _derive_lock: threading.RLock = field(
        default_factory=threading.RLock, repr=False, compare=False
    )

    @classmethod
    def empty(cls, dim: int) -> CubeSnapshot:
        return cls(
            rev=0,
            keys=np.zeros(0, dtype=np.int64),
            matrix=np.zeros((0, dim), dtype=np.float32),
            sessions=np.zeros(0, dtype=np.int64),
            speakers=np.zeros(0, dtype=object),
            times=np.zeros(0, dtype=np.float64),
            texts=[],
        )

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(previous, next) row of each row within its session in key order; -1 at the ends
        and for memories without a session. Sessions may interleave in key order."""
        n = len(self.keys)
        prev = np.full(n, -1, dtype=np.int64)
        nxt = np.full(n, -1, dtype=np.int64)
        if n > 1:
            order = np.lexsort((self.keys, self.sessions))
            s = self.sessions[order]
            same = (s[1:] == s[:-1]) & (s[1:] >= 0)
            idx = np.nonzero(same)[0]
            prev[order[idx + 1]] = order[idx]
            nxt[order[idx]] = order[idx + 1]
        return prev, nxt

    def derive(self, key: str, build: Callable[[], T]) -> T:
        """A structure computed once per snapshot (thread-safe; rebuilt with the snapshot)."""
        found = self.derived.get(key)
        if found is None:
            with self._derive_lock:
                found = self.derived.get(key)
                if found is None:
                    found = self.derived[key] = build()
        return found

    def mask(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """Boolean row mask for a set of allowed keys (None: everything allowed)."""
        return None if allowed is None else np.isin(self.keys, allowed)

    def top(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        if len(self.keys) == 0:
            return []
        return top_k(self.keys, self.matrix @ query, k, self.mask(allowed))


def top_k(
    keys: np.ndarray, scores: np.ndarray, k: int, mask: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """The k best (key, score) pairs, best first; masked-out and -inf rows never appear."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    k = min(k, len(scores))
    if k <= 0:
        return []
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.lexsort((keys[idx], -scores[idx]))]
    return [(int(keys[i]), float(scores[i])) for i in idx if np.isfinite(scores[i])]


class SnapshotRow(NamedTuple):
    """What a snapshot keeps of one active memory."""

    key: int
    vector: np.ndarray  # unit float32 (dim,)
    session_id: str | None
    speaker: str | None
    time: float  # days since 1970-01-01
    text: str  # the index text the retrievers see


def build_snapshot(rev: int, rows: list[SnapshotRow], dim: int) -> CubeSnapshot:
    return _extend(CubeSnapshot.empty(dim), rev, rows)


def _extend(base: CubeSnapshot, rev: int, rows: list[SnapshotRow]) -> CubeSnapshot:
    codes = {s: i for i, s in enumerate(base.session_ids)}
    new_codes = [
        -1 if r.session_id is None else codes.setdefault(r.session_id, len(codes)) for r in rows
    ]
    matrix = np.stack([r.vector for r in rows]).astype(np.float32) if rows else base.matrix[:0]
    return CubeSnapshot(
        rev=rev,
        keys=np.concatenate([base.keys, np.asarray([r.key for r in rows], dtype=np.int64)]),
        matrix=np.vstack([base.matrix, matrix]),
        sessions=np.concatenate([base.sessions, np.asarray(new_codes, dtype=np.int64)]),
        speakers=np.concatenate([base.speakers, _speakers([r.speaker for r in rows])]),
        times=np.concatenate([base.times, np.asarray([r.time for r in rows], dtype=np.float64)]),
        texts=[*base.texts, *(r.text for r in rows)],
        session_ids=list(codes),
    )


class Incremental(Protocol):
    """A derived structure that can follow its snapshot's changes without a rebuild."""

    def extended(self, rows: list[SnapshotRow]) -> Incremental: ...

    def selected(self, keep: np.ndarray) -> Incremental: ...


def _carried(snapshot: CubeSnapshot, move: Callable[[Incremental], Incremental]) -> dict[str, Any]:
    """Incremental structures moved to the next snapshot; everything else is rebuilt."""
    with snapshot._derive_lock:  # searches may be adding to it right now
        items = list(snapshot.derived.items())
    return {
        key: move(value)
        for key, value in items
        if hasattr(value, "extended") and hasattr(value, "selected")
    }


def _speakers(names: list[str | None]) -> np.ndarray:
    return np.asarray([(s or "").lower() for s in names], dtype=object)


class SnapshotCache:
    """One snapshot per cube; writes by this process patch it, anything else reloads it."""

    def __init__(self) -> None:
        self._cubes: dict[int, CubeSnapshot] = {}
        self._lock = threading.Lock()

    def cached(self, cube: int, rev: int) -> CubeSnapshot | None:
        with self._lock:
            entry = self._cubes.get(cube)
            return entry if entry is not None and entry.rev == rev else None

    def put(self, cube: int, snapshot: CubeSnapshot) -> CubeSnapshot:
        with self._lock:
            self._cubes[cube] = snapshot
        return snapshot

    def append(self, cube: int, old_rev: int, new_rev: int, rows: list[SnapshotRow]) -> None:
        """New rows (keys above every cached key) move a current snapshot to new_rev."""
        with self._lock:
            entry = self._current(cube, old_rev)
            if entry is not None:
                grown = _extend(entry, new_rev, rows)
                grown.derived.update(_carried(entry, lambda value: value.extended(rows)))
                self._cubes[cube] = grown

    def remove(self, cube: int, old_rev: int, new_rev: int, keys: list[int]) -> None:
        """Rows leaving the active set move a current snapshot to new_rev."""
        with self._lock:
            entry = self._current(cube, old_rev)
            if entry is None:
                return
            if not keys:  # same rows (e.g. a metadata change): keep what was derived
                self._cubes[cube] = replace(entry, rev=new_rev)
                return
            keep = ~np.isin(entry.keys, np.asarray(keys, dtype=np.int64))
            self._cubes[cube] = CubeSnapshot(
                rev=new_rev,
                keys=entry.keys[keep],
                matrix=entry.matrix[keep],
                sessions=entry.sessions[keep],
                speakers=entry.speakers[keep],
                times=entry.times[keep],
                texts=[t for t, k in zip(entry.texts, keep, strict=True) if k],
                session_ids=entry.session_ids,
                derived=_carried(entry, lambda value: value.selected(keep)),
            )

    def _current(self, cube: int, old_rev: int) -> CubeSnapshot | None:
        entry = self._cubes.get(cube)
        if entry is not None and entry.rev != old_rev:
            del self._cubes[cube]
            return None
        return entry

    def drop(self, cube: int | None = None) -> None:
        with self._lock:
            if cube is None:
                self._cubes.clear()
            else:
                self._cubes.pop(cube, None)


def encode_vector(vector: np.ndarray) -> bytes:
    """Vectors are stored as float16: half the bytes, cosine error below 1e-3."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def decode_matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    flat = np.frombuffer(b"".join(blobs), dtype=np.float16)
    return flat.reshape(len(blobs), dim).astype(np.float32)
