"""`engram gc`, `engram pin`, `engram unpin` and `engram retention`: retention from the
terminal. Registered on the main app with `register(app)`; the main CLI module (its
--home/--json state and helpers) is imported when a command runs."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engram.cli import common

out = Console()

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")]
MemoryIdArg = Annotated[str, typer.Argument(help="Memory id, or a unique prefix of it.")]


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    user: UserOpt = None,
    agent: AgentOpt = None,
    all_owners: Annotated[
        bool, typer.Option("--all", help="Every owner (the default without -u/-a).")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Evaluate as of this ISO time (default: now).")
    ] = None,
) -> None:
    """Retention maintenance: archive what expired, was forgotten or is over budget.

    Also moves turns out of full working buffers and consolidates what recurs into
    long-term memory; prints each decision with its rule and numbers."""

    @common.reports_errors
    def run() -> None:
        if all_owners and (user is not None or agent is not None):
            from engram.errors import ValidationError

            raise ValidationError("give -u/-a or --all, not both")
        with common.opened() as memory:
            report = memory.gc(user_id=user, agent_id=agent, dry_run=dry_run, at=at)
        if common.state.as_json:
            print(report.model_dump_json())
            return
        verb = "would" if dry_run else "did"
        title = f"gc ({'dry run' if dry_run else 'applied'}), {len(report.owners)} owner(s)"
        table = Table(title=title, expand=True)
        for col in ("owner", "id", "type", "tier", "action", "rule", "R", "strength", "why"):
            table.add_column(col, ratio=1 if col == "why" else None, no_wrap=col != "why")
        for d in report.decisions:
            table.add_row(
                d.owner,
                d.id[:8],
                d.type,
                d.tier.value,
                d.action.value,
                d.rule,
                f"{d.retrievability:.3f}",
                f"{d.strength_days:.1f}d",
                d.reason,
            )
        if report.decisions:
            out.print(table)
        out.print(
            f"{verb}: evict {report.evicted}, promote {report.promoted}, "
            f"displace {report.displaced}",
            highlight=False,
        )

    run()


def _pin_command(pinned: bool) -> Any:
    def command(
        memory_id: MemoryIdArg,
        reason: Annotated[str | None, typer.Option(help="Why (kept in history).")] = None,
    ) -> None:

        @common.reports_errors
        def run() -> None:
            with common.opened() as memory:
                verb = memory.pin if pinned else memory.unpin
                full_id = memory.resolve_id(memory_id)
                info = verb(full_id, reason=reason)
            if common.state.as_json:
                print(info.model_dump_json())
            else:
                out.print(f"{'pinned' if pinned else 'unpinned'} {full_id}")

        run()

    command.__doc__ = (
        "Pin a memory: gc never evicts it." if pinned else "Unpin a memory: gc may evict it."
    )
    return command


def retention(memory_id: MemoryIdArg) -> None:
    """A memory's tier, strength, retrievability, recalls, pin and expiry."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            info = memory.retention(memory.resolve_id(memory_id))
        if common.state.as_json:
            print(info.model_dump_json())
            return
        for key, value in json.loads(info.model_dump_json()).items():
            out.print(f"  [dim]{key:>18}[/]  {value}", highlight=False)

    run()


def register(app: typer.Typer) -> None:
    """Add `gc`, `pin`, `unpin` and `retention` to the main `engram` app."""
    app.command()(gc)
    app.command("pin")(_pin_command(True))
    app.command("unpin")(_pin_command(False))
    app.command()(retention)
