"""`engram tiers plan|run`: the scheduler from the terminal. `plan` shows which memories
would move between tiers and why (nothing changes); `run` queues those moves as jobs
(`--now` runs them in this process). Only typer and rich load here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engram.cli import common

if TYPE_CHECKING:
    from engram.memory import Memory
    from engram.scheduler.move import SchedulePlan

tiers_app = typer.Typer(
    help="The scheduler: move memories between text, KV blocks, adapters and the archive.",
    no_args_is_help=True,
)
out = Console()

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")]
AtOpt = Annotated[str | None, typer.Option("--at", help="Plan as of this ISO time (default: now).")]
MIB = 1 << 20


def _plans(memory: Memory, user: str | None, agent: str | None, **kw: Any) -> list[SchedulePlan]:
    return [
        memory.schedule(owner.get("user_id"), agent_id=owner.get("agent_id"), **kw)
        for owner in common.owners(memory, user, agent)
    ]


def _show(plans: list[SchedulePlan], verb: str) -> None:
    for plan in plans:
        table = Table(title=f"{plan.owner}: {len(plan.moves)} move(s)", expand=True)
        for col in ("id", "move", "rule", "score", "why"):
            table.add_column(col, ratio=1 if col == "why" else None, no_wrap=col != "why")
        for m in plan.moves:
            table.add_row(m.ids[0][:8], m.action, m.rule, f"{m.score:g}", m.reason)
        if plan.moves:
            out.print(table)
        counts = ", ".join(f"{a} {plan.count(a)}" for a in ("build", "evict", "learn", "archive"))
        kv = f"KV {plan.kv_bytes / MIB:.2f} of {plan.kv_budget_bytes / MIB:g} MiB"
        out.print(f"{plan.owner}: {verb} {counts}; {kv}", highlight=False)


@tiers_app.command("plan")
def plan_cmd(user: UserOpt = None, agent: AgentOpt = None, at: AtOpt = None) -> None:
    """Show each move the scheduler would make and why; change nothing.

    Without -u/-a, every owner."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            plans = _plans(memory, user, agent, dry_run=True, at=at)
        if common.state.as_json:
            common.emit([common.dump(p) for p in plans])
        else:
            _show(plans, "would")

    run()


@tiers_app.command("run")
def run_cmd(
    user: UserOpt = None,
    agent: AgentOpt = None,
    at: AtOpt = None,
    now: Annotated[
        bool, typer.Option("--now", help="Run the queued jobs here instead of in a worker.")
    ] = False,
) -> None:
    """Queue the planned moves as jobs (run by `engram worker` or `engram jobs run`).

    Each move, once run, writes a version into the memory's history (`engram history`)."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            plans = _plans(memory, user, agent, dry_run=False, at=at)
            ran = memory.run_jobs() if now else []
        if common.state.as_json:
            jobs = [common.job_fields(j) for j in ran]
            common.emit({"plans": [common.dump(p) for p in plans], "jobs": jobs})
            return
        _show(plans, "queued")
        for job in ran:
            outcome = job.error or ", ".join(f"{k}={v}" for k, v in (job.result or {}).items())
            out.print(f"job {job.id} {job.extractor}: {job.state.value} {outcome}", highlight=False)

    run()
