"""In-process exact vector index over one cube's active memories (numpy matrix).

Chosen by measurement (docs/benchmarks.md): for cubes up to ~10^5 memories a float32
matmul on 2 cores is faster than loading an ANN extension, and it is exact. The index is
a cache of the database: each cube carries a revision number bumped by every write, so a
write from another process or connection is seen on the next search.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass
class CubeVectors:
    rev: int
    keys: np.ndarray  # int64, sorted ascending
    matrix: np.ndarray  # float32 (n, dim), unit rows

    def top(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        if len(self.keys) == 0:
            return []
        scores = self.matrix @ query
        if allowed is not None:
            scores = np.where(np.isin(self.keys, allowed), scores, -np.inf)
        k = min(k, len(scores))
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return [(int(self.keys[i]), float(scores[i])) for i in idx if np.isfinite(scores[i])]


class VectorIndex:
    """Caches each cube's matrix; write paths apply deltas or invalidate."""

    def __init__(self, dim: int):
        self.dim = dim
        self._cubes: dict[int, CubeVectors] = {}
        self._lock = threading.Lock()

    def cached(self, cube: int, rev: int) -> CubeVectors | None:
        with self._lock:
            entry = self._cubes.get(cube)
            return entry if entry is not None and entry.rev == rev else None

    def load(self, cube: int, rev: int, keys: list[int], blobs: list[bytes]) -> CubeVectors:
        matrix = decode_matrix(blobs, self.dim)
        entry = CubeVectors(rev, np.asarray(keys, dtype=np.int64), matrix)
        with self._lock:
            self._cubes[cube] = entry
        return entry

    def apply(
        self,
        cube: int,
        old_rev: int,
        new_rev: int,
        add: tuple[list[int], np.ndarray] | None = None,
        remove: list[int] | None = None,
    ) -> None:
        """Move a cached cube from old_rev to new_rev, or drop it if it was not current."""
        with self._lock:
            entry = self._cubes.get(cube)
            if entry is None:
                return
            if entry.rev != old_rev:
                del self._cubes[cube]
                return
            keys, matrix = entry.keys, entry.matrix
            if remove:
                keep = ~np.isin(keys, np.asarray(remove, dtype=np.int64))
                keys, matrix = keys[keep], matrix[keep]
            if add is not None and len(add[0]):
                keys = np.concatenate([keys, np.asarray(add[0], dtype=np.int64)])
                matrix = np.vstack([matrix, add[1].astype(np.float32, copy=False)])
                order = np.argsort(keys, kind="stable")
                keys, matrix = keys[order], matrix[order]
            self._cubes[cube] = CubeVectors(new_rev, keys, matrix)

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
