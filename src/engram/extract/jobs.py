"""Extraction as background jobs. `add` only queues (one row per session and extractor,
keyed by the ids it stored, so the same input is never queued twice); a worker thread (or
`run_jobs` / `engram jobs run`) claims jobs, plans with the extractor and writes the plan in
one transaction. A failed run is retried with exponential backoff, then marked failed with
its error; nothing half-done is ever written."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace

from engram.config import EngramConfig
from engram.embed.base import Embedder
from engram.errors import EngramError
from engram.extract import build_extractors
from engram.extract.apply import apply_plan
from engram.extract.base import ExtractionContext, Extractor
from engram.llm import build_llm
from engram.llm.base import ChatModel
from engram.store.base import Store
from engram.store.jobs import Job, JobState, NewJob
from engram.types import MemoryItem, MemoryType

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often an idle worker looks for retries that came due


class Extraction:
    """The job system of one Memory: queue after adds, run, list, retry."""

    def __init__(self, store: Store, embedder: Embedder, config: EngramConfig):
        self.store, self.embedder, self.config = store, embedder, config
        self.extractors = build_extractors(config.extract.extractors)
        self._llm: ChatModel | None = None
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        # jobs of other kinds on the same queue (the scheduler's moves), by their name
        self.handlers: dict[str, Callable[[Job], dict[str, object]]] = {}

    # -- queueing ---------------------------------------------------------------------

    def active(self) -> list[Extractor]:
        """Extractors to queue: all configured ones, the LLM's only with an LLM."""
        has_llm = self.config.llm.provider != "none"
        return [e for e in self.extractors.values() if has_llm or not e.needs_llm]

    def queue(self, items: Iterable[MemoryItem]) -> int:
        """Queue jobs for the turns just stored; returns how many jobs are new."""
        by_owner: dict[str, dict[str | None, list[int]]] = defaultdict(lambda: defaultdict(list))
        for item in items:
            if item.type != MemoryType.TURN.value or item.provenance.source.startswith("extract:"):
                continue
            found = self.store.locate(item.id)  # jobs keep store keys: an erased memory's
            if found is not None:  # id must leave no trace (keys are never reused)
                by_owner[item.provenance.owner][item.provenance.session_id].append(found.key)
        jobs: list[NewJob] = []
        for owner, sessions in by_owner.items():
            cube = self.store.cube_id(owner)
            if cube is None:
                continue
            every = sorted(i for keys in sessions.values() for i in keys)
            for extractor in self.active():
                if extractor.scope == "cube":
                    jobs.append(_job(cube, None, extractor.name, every))
                else:
                    jobs += [
                        _job(cube, s, extractor.name, keys)
                        for s, keys in sessions.items()
                        if s is not None or not extractor.needs_session
                    ]
        added = self.store.enqueue_jobs(jobs, self.config.extract.max_attempts) if jobs else 0
        if added and self.config.extract.worker == "thread":
            self.start_worker().wake()
        return added

    # -- running ----------------------------------------------------------------------

    def llm(self) -> ChatModel | None:
        with self._lock:
            if self._llm is None:
                self._llm = build_llm(self.config.llm)
            return self._llm

    def run_one(self) -> Job | None:
        """Claim and run the oldest runnable job; None when there is none."""
        job = self.store.claim_job(self.config.extract.lease_s)
        if job is None:
            return None
        started = time.perf_counter()
        extractor = self.extractors.get(job.extractor)
        handler = self.handlers.get(job.extractor)
        try:
            if handler is not None:
                result = handler(job)
            elif extractor is None:
                raise _Permanent(f"no extractor {job.extractor!r} is configured")
            else:
                result = self._run(job, extractor)
        except _Permanent as err:
            return self._finish(job, JobState.FAILED, str(err))
        except EngramError as err:
            return self._failed(job, f"{type(err).__name__}: {err}")
        except Exception as err:  # noqa: BLE001 - a bug in one extractor must not stop the worker
            log.exception("extraction job %d (%s) crashed", job.id, job.extractor)
            return self._finish(job, JobState.FAILED, f"{type(err).__name__}: {err}")
        result["seconds"] = round(time.perf_counter() - started, 3)
        return self._finish(job, JobState.DONE, None, result)

    def _run(self, job: Job, extractor: Extractor) -> dict[str, object]:
        keys = list(dict.fromkeys(k for p in job.payloads for k in p.get("keys", [])))
        ids = [item.id for item in self.store.by_keys(job.cube, keys).values()]  # erased: gone
        ctx = ExtractionContext(
            owner=job.owner,
            cube=job.cube,
            store=self.store,
            embedder=self.embedder,
            config=self.config.extract,
            session_id=job.session_id,
            new_ids=ids,
            llm=self.llm() if extractor.needs_llm else None,
        )
        plan = extractor.plan(ctx)
        if not plan:
            return {"note": plan.note or "nothing to change"}
        keyed = tuple({d.type for d in plan.derived if d.key})
        existing = ctx.derived(extractor.name, keyed) if keyed else {}
        applied = apply_plan(
            self.store,
            self.embedder,
            job.cube,
            plan,
            extractor=extractor.name,
            source=extractor.source,
            existing=existing,
        )
        return {**applied.as_dict(), **({"note": plan.note} if plan.note else {})}

    def _failed(self, job: Job, error: str) -> Job:
        if job.attempts >= job.max_attempts:
            log.warning("extraction job %d (%s) failed for good: %s", job.id, job.extractor, error)
            return self._finish(job, JobState.FAILED, error)
        delay = self.config.extract.backoff_s * 2 ** (job.attempts - 1)
        log.warning(
            "extraction job %d (%s) failed (attempt %d of %d), retry in %.1f s: %s",
            job.id,
            job.extractor,
            job.attempts,
            job.max_attempts,
            delay,
            error,
        )
        return self._finish(job, JobState.QUEUED, error, retry_in_s=delay)

    def _finish(
        self,
        job: Job,
        state: JobState,
        error: str | None,
        result: dict[str, object] | None = None,
        retry_in_s: float = 0.0,
    ) -> Job:
        self.store.finish_job(job, state, error, result, retry_in_s)
        return replace(job, state=state, error=error, result=result)

    def run_pending(self, limit: int | None = None) -> list[Job]:
        """Run runnable jobs until none is left (or `limit` ran); returns them as ended."""
        ran: list[Job] = []
        while limit is None or len(ran) < limit:
            job = self.run_one()
            if job is None:
                break
            ran.append(job)
        return ran

    # -- the worker thread ------------------------------------------------------------

    def start_worker(self) -> _Worker:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = _Worker(self)
                self._worker.start()
            return self._worker

    def close(self) -> None:
        """Stop the worker after its current job; close the LLM if one was built."""
        worker = self._worker
        if worker is not None:
            worker.stop()
        if self._llm is not None:
            self._llm.close()


class _Worker(threading.Thread):
    def __init__(self, extraction: Extraction):
        super().__init__(name="engram-extraction", daemon=True)
        self.extraction = extraction
        self._wake = threading.Event()
        self._halt = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        if self is not threading.current_thread():
            self.join()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                job = self.extraction.run_one()
            except EngramError as err:  # the store is closed or failing: stop quietly
                log.warning("the extraction worker stopped: %s", err)
                return
            if job is None:
                self._wake.wait(POLL_S)
                self._wake.clear()


class _Permanent(Exception):
    """A job that can never succeed (not retried)."""


def _job(cube: int, session: str | None, extractor: str, keys: list[int]) -> NewJob:
    """Keyed by the memories that queued it: the same input is never queued twice."""
    keys = sorted(set(keys))
    digest = hashlib.sha256(f"{extractor}\x00{session}\x00{keys}".encode())
    return NewJob(cube, session, extractor, digest.hexdigest()[:32], {"keys": keys})
