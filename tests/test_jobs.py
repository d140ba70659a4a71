"""Extraction jobs: queued by add, idempotent, coalesced, retried with backoff, failures
visible, leases, the worker thread, erasure, and `engram jobs`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from _engram_helpers import HashEmbedder
from engram import Memory
from engram.cli import app
from engram.embed import Embedder
from engram.extract import ExtractionContext, ExtractionError, Extractor, Plan, register_extractor
from engram.extract.base import Derived
from engram.store.jobs import JobState
from engram.types import MemoryType

TURNS = [
    {"content": "I moved to Lisbon last week", "name": "Maya"},
    {"content": "How is the new flat?", "name": "Tomas"},
    {"content": "Small, with a balcony for tomatoes", "name": "Maya"},
    {"content": "Sounds lovely, send photos", "name": "Tomas"},
]


class Flaky(Extractor):
    """Fails its first `failures` runs, then writes one note."""

    name = "test-flaky"
    failures: ClassVar[int] = 1
    runs: ClassVar[int] = 0

    def plan(self, ctx: ExtractionContext) -> Plan:
        type(self).runs += 1
        if type(self).runs <= type(self).failures:
            raise ExtractionError(f"simulated failure {type(self).runs}")
        turns = ctx.memories()
        note = Derived(
            f"{len(turns)} turns in {ctx.session_id}",
            MemoryType.NOTE.value,
            turns.items[:1],
            key=f"{self.name}:{ctx.session_id}",
        )
        return Plan(derived=[note])


class Crashing(Extractor):
    name = "test-crash"

    def plan(self, ctx: ExtractionContext) -> Plan:
        return Plan(derived=[None])  # type: ignore[list-item]  # a bug: not a Derived


register_extractor(Flaky)
register_extractor(Crashing)


@pytest.fixture
def flaky() -> type[Flaky]:
    Flaky.runs, Flaky.failures = 0, 1
    return Flaky


def _memory(home: Path, **extract: object) -> Memory:
    settings = {"backoff_s": 0.0, **extract}
    return Memory(home=home, embedder=HashEmbedder(), extract=settings)


def test_add_queues_one_job_per_session_and_extractor(tmp_path: Path) -> None:
    with _memory(tmp_path) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        m.add(TURNS[:2], user_id="u", session_id="s2")
        jobs = m.jobs(user_id="u")
        pairs = sorted((j.extractor, j.session_id) for j in jobs)
        assert pairs == [
            ("dates", "s1"),
            ("dates", "s2"),
            ("dedup", None),
            ("dedup", None),
            ("session-summary", "s1"),
            ("session-summary", "s2"),
            ("topic-summary", None),
            ("topic-summary", None),
        ]  # no 'llm' job: no LLM is configured
        assert all(j.state is JobState.QUEUED and j.attempts == 0 for j in jobs)
        assert m.jobs(user_id="nobody") == []


def test_the_same_input_is_never_queued_or_run_twice(tmp_path: Path) -> None:
    with _memory(tmp_path) as m:
        turns = [{**t, "source_id": f"D1:{i}"} for i, t in enumerate(TURNS)]
        m.add(turns, user_id="u", session_id="s1")
        assert len(m.jobs(user_id="u")) == 4
        m.add(turns, user_id="u", session_id="s1")  # re-import: same turns, same ids
        assert len(m.jobs(user_id="u")) == 4
        first = m.run_jobs()
        assert {j.state for j in first} == {JobState.DONE}
        m.add(turns, user_id="u", session_id="s1")
        assert m.run_jobs() == []
        assert m.extract(user_id="u") == 0  # queueing the stored turns again: same input
        summaries = m.get_all(user_id="u", types=["summary"]).items
        assert len(summaries) == 1


def test_queued_jobs_of_a_session_run_once_together(tmp_path: Path) -> None:
    with _memory(tmp_path, extractors=["session-summary"]) as m:
        for turn in TURNS:
            m.add(turn, user_id="u", session_id="s1")
        assert len(m.jobs(user_id="u", state="queued")) == 4
        ran = m.run_jobs()
        assert len(ran) == 1 and ran[0].result["added"] == 1  # one run covered all four
        done = m.jobs(user_id="u", state=JobState.DONE)
        assert len(done) == 4 and all(j.result == ran[0].result for j in done)


def test_a_failed_run_is_retried_then_succeeds(tmp_path: Path, flaky: type[Flaky]) -> None:
    with _memory(tmp_path, extractors=["test-flaky"], max_attempts=3) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        (first,) = m.run_jobs(limit=1)
        assert first.state is JobState.QUEUED and first.attempts == 1
        assert "simulated failure 1" in first.error
        (stored,) = m.jobs(user_id="u")
        assert stored.state is JobState.QUEUED and "simulated failure 1" in stored.error
        (second,) = m.run_jobs()
        assert second.state is JobState.DONE and second.attempts == 2
        notes = m.get_all(user_id="u", types=["note"]).items
        assert [n.memory for n in notes] == ["4 turns in s1"]


def test_backoff_delays_the_retry(tmp_path: Path, flaky: type[Flaky]) -> None:
    with _memory(tmp_path, extractors=["test-flaky"], backoff_s=30.0) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        (job,) = m.run_jobs()
        assert job.state is JobState.QUEUED
        assert m.run_jobs() == []  # not due for 30 s
        assert m.jobs(user_id="u")[0].state is JobState.QUEUED


def test_failure_after_the_last_attempt_is_visible_and_retryable(
    tmp_path: Path, flaky: type[Flaky]
) -> None:
    flaky.failures = 2
    with _memory(tmp_path, extractors=["test-flaky"], max_attempts=2) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        ran = m.run_jobs()
        assert [j.state for j in ran] == [JobState.QUEUED, JobState.FAILED]
        (failed,) = m.jobs(user_id="u", state="failed")
        assert failed.attempts == 2 and "simulated failure 2" in failed.error
        assert m.get_all(user_id="u", types=["note"]).items == []
        assert m.retry_jobs(user_id="u") == 1
        (again,) = m.run_jobs()
        assert again.state is JobState.DONE and again.attempts == 1


def test_a_crashing_extractor_fails_its_job_and_the_rest_still_run(tmp_path: Path) -> None:
    with _memory(tmp_path, extractors=["test-crash", "session-summary"]) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        ran = {j.extractor: j for j in m.run_jobs()}
        assert ran["test-crash"].state is JobState.FAILED
        assert ran["test-crash"].error.startswith("AttributeError")
        assert ran["session-summary"].state is JobState.DONE


def test_a_job_whose_worker_died_is_claimed_again(tmp_path: Path) -> None:
    with _memory(tmp_path, extractors=["session-summary"], max_attempts=2) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        claimed = m.store.claim_job(lease_s=0.05)  # a worker that never finishes
        assert claimed is not None and m.store.claim_job(lease_s=60) is None
        time.sleep(0.1)
        (rerun,) = m.run_jobs()
        assert rerun.id == claimed.id and rerun.state is JobState.DONE and rerun.attempts == 2


def test_the_worker_thread_runs_jobs_after_add(tmp_path: Path) -> None:
    with _memory(tmp_path, worker="thread", extractors=["session-summary"]) as m:
        start = time.perf_counter()
        m.add(TURNS, user_id="u", session_id="s1")
        while time.perf_counter() - start < 30:
            if m.jobs(user_id="u", state="done"):
                break
            time.sleep(0.05)
        assert m.get_all(user_id="u", types=["summary"]).items
        worker = m.extraction._worker
        assert worker is not None and worker.is_alive()
    assert not worker.is_alive()  # close() stopped it


def test_erasing_an_owner_erases_its_jobs(tmp_path: Path) -> None:
    with _memory(tmp_path) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        m.add(TURNS, user_id="v", session_id="s1")
        m.delete_all(user_id="u", hard=True)
        assert m.jobs(user_id="u") == []
        assert {j.owner for j in m.jobs()} == {"user:v"}
        m.run_jobs()


def test_bad_arguments_are_validation_errors(tmp_path: Path) -> None:
    from engram.errors import ValidationError

    with _memory(tmp_path) as m:
        with pytest.raises(ValidationError, match="unknown job state"):
            m.jobs(state="sleeping")
        with pytest.raises(ValidationError, match="limit"):
            m.jobs(limit=0)
        with pytest.raises(ValidationError, match="integers"):
            m.retry_jobs(["1"])  # type: ignore[list-item]


def test_enqueue_off_queues_nothing_until_asked(tmp_path: Path) -> None:
    with _memory(tmp_path, enqueue=False) as m:
        m.add(TURNS, user_id="u", session_id="s1")
        assert m.jobs() == []
        assert m.extract(user_id="u") == 4
        assert {j.state for j in m.run_jobs()} == {JobState.DONE}


def test_cli_jobs_ls_run_retry_queue(
    tmp_path: Path, flaky: type[Flaky], embedder: Embedder
) -> None:
    runner = CliRunner()
    home = tmp_path / "store"
    env = {"ENGRAM_EXTRACT__EXTRACTORS": '["test-flaky"]', "ENGRAM_EXTRACT__MAX_ATTEMPTS": "1"}

    def run(*args: str) -> object:
        result = runner.invoke(app, ["--home", str(home), "--json", *args], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    with Memory(home=home, embedder=embedder, extract={"enqueue": False}) as m:
        m.add(TURNS, user_id="u", session_id="s1")
    assert run("jobs", "ls") == []
    assert run("jobs", "queue", "-u", "u", "-s", "s1") == {"queued": 1}
    (job,) = run("jobs", "ls", "--state", "queued", "--limit", "5")
    assert job["extractor"] == "test-flaky" and job["owner"] == "user:u"
    (failed,) = run("jobs", "run")
    assert failed["state"] == "failed" and "simulated failure 1" in failed["error"]
    assert run("jobs", "retry", str(failed["id"])) == {"requeued": 1}
    (done,) = run("jobs", "run", "--limit", "1")
    assert done["state"] == "done" and done["result"]["added"] == 1
    table = runner.invoke(app, ["--home", str(home), "jobs", "ls", "-u", "u"], env=env)
    assert table.exit_code == 0 and "test-flaky" in table.output and "done" in table.output
    bad = runner.invoke(app, ["--home", str(home), "jobs", "ls", "--state", "nope"], env=env)
    assert bad.exit_code == 2 and "unknown job state" in bad.output


def test_async_memory_has_the_job_verbs(tmp_path: Path) -> None:
    import asyncio

    from engram import AsyncMemory

    async def go() -> None:
        async with AsyncMemory(memory=_memory(tmp_path, extractors=["session-summary"])) as am:
            await am.add(TURNS, user_id="u", session_id="s1")
            assert [j.state for j in await am.jobs(user_id="u")] == [JobState.QUEUED]
            (job,) = await am.run_jobs()
            assert job.state is JobState.DONE
            assert await am.retry_jobs(user_id="u") == 0
            assert await am.extract(user_id="u") == 0  # the same input: not queued again

    asyncio.run(go())
