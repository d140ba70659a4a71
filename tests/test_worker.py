"""`engram worker`: real worker processes on SQLite and PostgreSQL. A worker killed with
SIGKILL mid-job loses nothing: the lease runs out, another worker claims the job again,
and it completes exactly once. SIGTERM lets the job in hand finish. No timing is asserted:
a gate file holds a job in place, and every wait has a generous deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engram import Memory
from engram.cli import app
from engram.embed import Embedder
from engram.errors import ValidationError
from engram.worker import JobRun, JobWorker
from store_contract._pg import fresh_database, started_server

# An extractor that waits at a gate: `started-<pid>` when a worker begins the job, one
# line in `planned` per plan returned (a killed worker never gets there).
GATED = """
import os, time
from pathlib import Path
from engram.extract import register_extractor
from engram.extract.session_summary import SessionSummary

@register_extractor
class GatedSummary(SessionSummary):
    name = "gated-summary"

    def plan(self, ctx):
        gate = Path(os.environ["ENGRAM_TEST_GATE"])  # each test's own
        (gate / f"started-{os.getpid()}").write_text(ctx.session_id or "")
        while not (gate / "open").exists():
            time.sleep(0.02)
        plan = super().plan(ctx)
        with (gate / "planned").open("a") as f:
            f.write(f"{os.getpid()}\\n")
        return plan
"""
TURNS = [
    "Maya adopted a grey cat from the shelter.",
    "Tomas fixed the old bicycle with a new chain.",
    "The team dinner moved to Friday at the harbour.",
    "Maya started learning the cello last winter.",
    "Tomas planted tomatoes on the balcony.",
]
runner = CliRunner()
WAIT_S = 120.0  # generous: two cores shared with other test runs


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Any]:
    with started_server() as server:
        yield server


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The gate directory, and the gated extractor importable here and in subprocesses."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "gated_extractor.py").write_text(GATED)
    folder = tmp_path / "gate"
    folder.mkdir()
    monkeypatch.setenv("ENGRAM_TEST_GATE", str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugins), *sys.path]))
    monkeypatch.syspath_prepend(str(plugins))
    __import__("gated_extractor")
    return folder


def _memory(home: Path, embedder: Embedder, url: str | None, **extract: Any) -> Memory:
    settings: dict[str, Any] = {"extract": {"extractors": ["gated-summary"], **extract}}
    if url is not None:
        settings["database_url"] = url
    return Memory(home=home, embedder=embedder, **settings)


def _worker(home: Path, url: str | None, *args: str, lease_s: float = 600) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        ENGRAM_HOME=str(home),
        ENGRAM_EXTRACT__EXTRACTORS='["gated-summary"]',
        ENGRAM_EXTRACT__LEASE_S=str(lease_s),
    )
    if url is not None:
        env["ENGRAM_DATABASE_URL"] = url
    command = [sys.executable, "-m", "engram", "--json", "worker", "--import", "gated_extractor"]
    return subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(predicate: Any, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")  # fmt: skip
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _finish(proc: subprocess.Popen) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _started(gate: Path) -> list[Path]:
    return sorted(gate.glob("started-*"))


def test_a_killed_worker_loses_nothing_and_the_job_runs_exactly_once(
    pg_server: Any, gate: Path, tmp_path: Path, embedder: Embedder
) -> None:
    url = fresh_database(pg_server)
    memory = _memory(tmp_path, embedder, url)
    try:
        turns = memory.add(TURNS, user_id="maya", session_id="s1")
        assert [j.state.value for j in memory.jobs(user_id="maya")] == ["queued"]

        first = _worker(tmp_path, url, lease_s=2)
        _wait_for(lambda: len(_started(gate)) == 1, "the first worker to start the job", first)
        first.kill()  # SIGKILL mid-job: no chance to clean up
        first.wait(timeout=WAIT_S)
        (running,) = memory.jobs(user_id="maya")
        assert (running.state.value, running.attempts) == ("running", 1)  # leased, abandoned

        (gate / "open").touch()
        second = _worker(tmp_path, url, "--max-jobs", "1", "--poll-interval", "0.1", lease_s=2)
        lines = _finish(second)  # claims it once the lease has run out
        assert lines[0]["event"] == "started"
        (ran,) = [line for line in lines if line["event"] == "job"]
        assert (ran["state"], ran["attempts"], ran["result"]["added"]) == ("done", 2, 1)
        assert lines[-1] == {**lines[-1], "event": "stopped", "reason": "max-jobs", "jobs": 1}

        assert len(_started(gate)) == 2  # both workers began it ...
        assert (gate / "planned").read_text().split() == [str(second.pid)]  # ... one finished
        (job,) = memory.jobs(user_id="maya")
        assert (job.state.value, job.attempts, job.error) == ("done", 2, None)
        items = memory.get_all(user_id="maya", limit=100).items
        assert sorted(i.id for i in items if i.type == "turn") == sorted(t.id for t in turns)
        summaries = [i for i in items if i.type == "summary"]
        assert [s.provenance.source_id for s in summaries] == ["gated-summary:s1"]
        assert memory.extract(user_id="maya", session_id="s1") == 0  # never queued twice

        drained = _finish(_worker(tmp_path, url, "--once"))  # nothing left to run
        assert drained[-1]["reason"] == "drained" and drained[-1]["jobs"] == 0
        assert len(memory.get_all(user_id="maya", limit=100).items) == len(items)
    finally:
        memory.close()


def test_sigterm_lets_the_job_in_hand_finish(
    gate: Path, tmp_path: Path, embedder: Embedder
) -> None:
    memory = _memory(tmp_path, embedder, None)
    try:
        memory.add(TURNS, user_id="maya", session_id="s1")
        memory.add(TURNS, user_id="maya", session_id="s2")
        proc = _worker(tmp_path, None)
        _wait_for(lambda: len(_started(gate)) == 1, "the worker to start a job", proc)
        proc.send_signal(signal.SIGTERM)
        (gate / "open").touch()  # the job goes on after the signal
        lines = _finish(proc)
        assert lines[-1]["reason"] == "stopped" and lines[-1]["jobs"] == 1
        states = sorted(j.state.value for j in memory.jobs(user_id="maya"))
        assert states == ["done", "queued"]  # finished the one in hand, took no other
        summaries = memory.get_all(user_id="maya", types="summary", limit=10).items
        assert len(summaries) == 1
    finally:
        memory.close()


def test_once_drains_the_queue_and_reports_json_lines(
    gate: Path, tmp_path: Path, embedder: Embedder
) -> None:
    (gate / "open").touch()
    memory = _memory(tmp_path, embedder, None)
    try:
        for session in ("s1", "s2", "s3"):
            memory.add(TURNS, user_id="maya", session_id=session)
    finally:
        memory.close()
    result = runner.invoke(
        app,
        ["--home", str(tmp_path), "--json", "worker", "--once", "--import", "gated_extractor"],
        env={"ENGRAM_EXTRACT__EXTRACTORS": '["gated-summary"]'},
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["started", "job", "job", "job", "stopped"]
    assert {line["session_id"] for line in lines[1:-1]} == {"s1", "s2", "s3"}
    assert lines[-1] == {
        "event": "stopped",
        "reason": "drained",
        "jobs": 3,
        "done": 3,
        "failed": 0,
        "retrying": 0,
        "store_errors": 0,
    }


def test_max_jobs_and_stop_end_the_loop(gate: Path, tmp_path: Path, embedder: Embedder) -> None:
    (gate / "open").touch()
    memory = _memory(tmp_path, embedder, None)
    try:
        for session in ("s1", "s2", "s3"):
            memory.add(TURNS, user_id="maya", session_id=session)
        capped = JobWorker(memory, max_jobs=1, poll_interval_s=0.01).run()
        assert (capped.reason, capped.jobs, capped.done) == ("max-jobs", 1, 1)
        worker = JobWorker(memory, poll_interval_s=0.01)

        def stop_after_one(run: JobRun) -> None:
            assert run.job.state.value == "done"
            worker.stop()

        stopped = worker.run(stop_after_one)
        assert (stopped.reason, stopped.jobs) == ("stopped", 1)
        left = [j.state.value for j in memory.jobs(user_id="maya")]
        assert sorted(left) == ["done", "done", "queued"]
    finally:
        memory.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--poll-interval", "0"], "poll interval must be more than 0"),
        (["--max-jobs", "0"], "max jobs must be a positive integer"),
        (["--import", "no_such_engram_plugin"], "--import no_such_engram_plugin: cannot import"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path), "--json", "worker", *args])
    assert result.exit_code == 2, result.output
    assert message in json.loads(result.stdout)["error"]["message"]


def test_the_python_api_checks_its_arguments(memory: Memory) -> None:
    with pytest.raises(ValidationError, match="poll interval"):
        JobWorker(memory, poll_interval_s=-1)
    with pytest.raises(ValidationError, match="max jobs"):
        JobWorker(memory, max_jobs=True)  # type: ignore[arg-type]
