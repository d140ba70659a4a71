"""Concurrent callers share model calls, like a database's group commit.

While one thread runs the model, texts from other threads queue up; when it finishes, the
first waiting thread takes everything queued (up to `max_batch` texts) as one batch. A lone
caller runs at once — there is no timer and no extra thread — and a server with many
concurrent searches embeds them in batches, several times cheaper per text on a CPU.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from engram.embed.base import Embedder, EmbeddingError


@dataclass
class _Request:
    texts: list[str]
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None


class CoalescingEmbedder(Embedder):
    def __init__(self, inner: Embedder, max_batch: int = 64):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_batch = max(1, max_batch)
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._busy = False
        self.model_calls = 0

    def _embed(self, texts: list[str]) -> np.ndarray:
        request = _Request(texts)
        with self._lock:
            self._pending.append(request)
            request.lead = not self._busy
            self._busy = True
        if not request.lead:
            request.wake.wait()
        if request.lead:  # first in the queue: run one batch, which includes this request
            self._run_batch()
        if request.error is not None:
            raise request.error
        if request.result is None:  # cannot happen: whoever ran the batch set one or the other
            raise EmbeddingError("a coalesced embedding batch returned no result")
        return request.result

    def _run_batch(self) -> None:
        with self._lock:
            batch, size = [], 0
            while self._pending and (
                not batch or size + len(self._pending[0].texts) <= self.max_batch
            ):
                batch.append(self._pending.pop(0))
                size += len(batch[-1].texts)
        try:
            vectors = self.inner.embed([t for r in batch for t in r.texts])
            self.model_calls += 1
        except BaseException as err:  # every caller in the batch sees the failure
            for r in batch:
                r.error = err
            raise
        else:
            start = 0
            for r in batch:
                r.result = vectors[start : start + len(r.texts)]
                start += len(r.texts)
        finally:
            for r in batch:
                if not r.lead:
                    r.wake.set()
            with self._lock:  # hand the model to the next waiting thread, or go idle
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.wake.set()
                else:
                    self._busy = False

    def close(self) -> None:
        self.inner.close()
