"""Concurrent callers share model calls, like a database's group commit.

While one thread runs the model, texts from other threads queue up; when it finishes, the
first waiting thread takes everything queued (up to `max_batch` texts) as one batch. A lone
caller runs at once — there is no timer and no extra thread — and a server with many
concurrent searches embeds them in batches, several times cheaper per text on a CPU.

A call with more than `max_batch` texts (a bulk add) queues them one batch at a time, so a
query that arrives meanwhile waits for at most one batch, not for the whole bulk call.

A batch holds one owner's texts only (`Embedder.for_owner`; calls made for no owner form
a group of their own). Batched transformer inference is not bit-identical to one text at a
time (padding, kernel shapes: cosine 0.99999), so a batch mixing owners would let the
scores one owner sees depend on what another owner was embedding at the same moment.
Nothing outlives a batch (no cache here; the per-owner LRU sits in front), so all that one
owner can notice of another is load: a call waits while other calls run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from engram.embed.base import Embedder, EmbeddingError
from engram.embed.cache import NO_OWNER


@dataclass
class _Request:
    texts: list[str]
    owner: str
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
        return self._embed_for(NO_OWNER, texts)

    def _embed_for(self, owner: str, texts: list[str]) -> np.ndarray:
        if len(texts) <= self.max_batch:
            return self._submit(owner, texts)
        # one batch at a time: callers that queue meanwhile go before the next piece. The
        # pieces take the texts longest first, so each batch pads to lengths alike (in
        # call order, one short text would pad 31 others to the longest: 1.7x slower).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        pieces = [
            self._submit(owner, [texts[i] for i in order[start : start + self.max_batch]])
            for start in range(0, len(texts), self.max_batch)
        ]
        vectors = np.empty_like(pieces[0], shape=(len(texts), pieces[0].shape[1]))
        vectors[order] = np.concatenate(pieces)
        return vectors

    def _submit(self, owner: str, texts: list[str]) -> np.ndarray:
        request = _Request(texts, owner)
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
        with self._lock:  # the first waiting request, then more of its owner's in order
            first = self._pending.pop(0)
            batch, size, rest = [first], len(first.texts), []
            for r in self._pending:
                if r.owner == first.owner and size + len(r.texts) <= self.max_batch:
                    batch.append(r)
                    size += len(r.texts)
                else:
                    rest.append(r)
            self._pending = rest
        try:
            texts = [t for r in batch for t in r.texts]
            vectors = self.inner.for_owner(first.owner).embed(texts)
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
