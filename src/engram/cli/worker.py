"""`engram worker`: a long-running process that claims and runs queued extraction jobs
from the store of --home / `database_url` (SQLite or PostgreSQL alike), until SIGTERM or
SIGINT (the job in hand finishes first; a second signal stops at once).

Only typer and rich load here; the store opens when the command runs."""

from __future__ import annotations

import importlib
import os
import signal
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from engram.cli import common
from engram.errors import ValidationError

if TYPE_CHECKING:
    from engram.errors import StoreError
    from engram.worker import JobRun, WorkerSummary

err = Console(stderr=True)


def _import(modules: list[str]) -> None:
    """Modules that register extractors (`register_extractor`) before the store opens."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValidationError(f"--import {name}: cannot import it ({exc})") from exc


def _job_line(run: JobRun) -> dict[str, Any]:
    return {
        "event": "job",
        **common.job_fields(run.job),
        "ids": list(run.job.ids),
        "seconds": round(run.seconds, 3),
    }


def _on_job(run: JobRun) -> None:
    if common.state.as_json:
        common.emit(_job_line(run))
        return
    job = run.job
    outcome = job.error or ", ".join(f"{k}={v}" for k, v in (job.result or {}).items())
    err.print(
        f"job {job.id} {job.extractor} {job.owner} {job.session_id or '-'}: "
        f"{job.state.value} ({run.seconds:.2f} s) {outcome}",
        highlight=False,
        soft_wrap=True,
    )


def _on_store_error(exc: StoreError) -> None:
    if common.state.as_json:
        common.emit({"event": "store_error", "message": str(exc)})
    else:
        err.print(f"[yellow]store error, retrying: {exc}[/]", highlight=False, soft_wrap=True)


def _summary_line(summary: WorkerSummary) -> dict[str, Any]:
    return {
        "event": "stopped",
        "reason": summary.reason,
        "jobs": summary.jobs,
        "done": summary.done,
        "failed": summary.failed,
        "retrying": summary.retrying,
        "store_errors": summary.store_errors,
    }


def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Run until no job is runnable now, then exit.")
    ] = False,
    poll_interval: Annotated[
        float,
        typer.Option("--poll-interval", help="Seconds between looks at an empty queue."),
    ] = 1.0,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", help="Exit after running this many jobs.")
    ] = None,
    modules: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            help="Python module to import first (e.g. one registering extractors); repeats.",
        ),
    ] = None,
) -> None:
    """Run queued extraction jobs until SIGTERM/SIGINT (the current job finishes first)."""

    @common.reports_errors
    def run() -> None:
        from engram.worker import JobWorker

        _import(modules or [])
        with common.opened() as memory:
            jobs = JobWorker(memory, poll_interval_s=poll_interval, max_jobs=max_jobs, once=once)
            previous: dict[int, Any] = {}

            def stop(signum: int, frame: FrameType | None) -> None:
                jobs.stop()
                for sig, handler in previous.items():  # a second signal acts at once
                    signal.signal(sig, handler)
                if not common.state.as_json:
                    err.print("stopping after the current job", highlight=False)

            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, stop)
            if common.state.as_json:
                common.emit({"event": "started", "pid": os.getpid(), "once": once})
            else:
                err.print(f"engram worker {os.getpid()}: waiting for jobs", highlight=False)
            summary = jobs.run(_on_job, _on_store_error)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        line = _summary_line(summary)
        if common.state.as_json:
            common.emit(line)
        else:
            err.print(
                f"stopped ({summary.reason}): {summary.jobs} job(s), {summary.done} done, "
                f"{summary.failed} failed, {summary.retrying} to retry",
                highlight=False,
            )

    run()


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
