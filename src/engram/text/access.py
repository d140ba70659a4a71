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
        self._pending: Counter[int] = Counter()
        self._lock = threading.Lock()

    def record(self, keys: list[int]) -> None:
        with self._lock:
            self._pending.update(keys)
            due = sum(self._pending.values()) >= self.flush_every
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if pending:
            self.store.record_access(dict(pending), datetime.now(UTC))
