"""Buffered access statistics: search hits are counted without a write per search."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

from engram.store.base import Store


class AccessRecorder:
    """Counts hits in memory and flushes them in one transaction every `flush_every` hits."""

    def __init__(self, store: Store, flush_every: int = 256):
        self.store = store
        self.flush_every = flush_every
        self._pending: Counter[tuple[int, int]] = Counter()  # (cube, key) -> hits
        self._lock = threading.Lock()

    def record(self, cube: int, keys: list[int]) -> None:
        with self._lock:
            self._pending.update((cube, key) for key in keys)
            due = sum(self._pending.values()) >= self.flush_every
        if due:
            self.flush()

    def forget(self, cube: int, keys: list[int] | None = None) -> None:
        """Drop pending counts of purged memories (`None`: of the whole cube)."""
        with self._lock:
            gone = set(keys or ())
            for pending in [p for p in self._pending if p[0] == cube]:
                if keys is None or pending[1] in gone:
                    del self._pending[pending]

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
        by_cube: dict[int, dict[int, int]] = {}
        for (cube, key), hits in pending.items():
            by_cube.setdefault(cube, {})[key] = hits
        at = datetime.now(UTC)
        for cube, counts in by_cube.items():
            self.store.record_access(cube, counts, at)
