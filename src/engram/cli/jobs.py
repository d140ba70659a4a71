"""`engram jobs ls|run|retry|queue`: the extraction jobs queued after adds.

Only typer and rich load here; the store opens when a command runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engram.cli import common

if TYPE_CHECKING:
    from engram.store.jobs import Job

jobs_app = typer.Typer(
    help="Extraction jobs: derived memories (summaries, dated events, merges, LLM facts).",
    no_args_is_help=True,
)
out = Console()

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")]


def _run(body: Callable[[Any], None]) -> None:
    """Run `body(memory)` on the Memory of --home, with Engram errors reported."""

    @common.reports_errors
    def go() -> None:
        with common.opened() as memory:
            body(memory)

    go()


def _row(job: Job) -> dict[str, Any]:
    return {
        **common.job_fields(job),
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


def _show(jobs: list[Job], title: str) -> None:
    if common.state.as_json:
        common.emit([_row(j) for j in jobs])
        return
    table = Table(title=title)
    for column in ("id", "owner", "session", "extractor", "state", "tries", "outcome"):
        table.add_column(column)
    for j in jobs:
        outcome = j.error or ", ".join(f"{k}={v}" for k, v in (j.result or {}).items())
        table.add_row(
            str(j.id),
            j.owner,
            j.session_id or "-",
            j.extractor,
            j.state.value,
            f"{j.attempts}/{j.max_attempts}",
            outcome,
        )
    out.print(table)


@jobs_app.command("ls")
def ls(
    user: UserOpt = None,
    agent: AgentOpt = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help="Only jobs in this state: queued, running, done, failed."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest jobs shown.")] = 50,
) -> None:
    """List extraction jobs, newest first: state, attempts, error or result."""
    _run(lambda m: _show(m.jobs(user_id=user, agent_id=agent, state=state, limit=limit), "jobs"))


@jobs_app.command("run")
def run(
    limit: Annotated[int | None, typer.Option("--limit", help="Run at most this many.")] = None,
) -> None:
    """Run queued jobs now, in this process, until none is runnable."""
    _run(lambda m: _show(m.run_jobs(limit=limit), "jobs run"))


@jobs_app.command("retry")
def retry(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Job ids (default: every failed one).")
    ] = None,
    user: UserOpt = None,
    agent: AgentOpt = None,
) -> None:
    """Queue failed jobs again with fresh attempts."""
    _run(lambda m: _say("requeued", m.retry_jobs(ids or None, user_id=user, agent_id=agent)))


@jobs_app.command("queue")
def queue(
    user: UserOpt = None,
    agent: AgentOpt = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Session id.")] = None,
) -> None:
    """Queue extraction over an owner's stored turns (e.g. added with extract.enqueue off)."""
    _run(lambda m: _say("queued", m.extract(user_id=user, agent_id=agent, session_id=session)))


def _say(what: str, count: int) -> None:
    if common.state.as_json:
        common.emit({what: count})
    else:
        out.print(f"{count} job(s) {what}")
