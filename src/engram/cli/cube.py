"""`engram cube export|import`: one owner's cube (every tier) as a checksummed bundle, a
directory or a tar, to move between homes and backends (docs/bundles.md).

Only typer and rich load here; the store, and the models an import checks KV blocks and
adapters against, load when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from engram.cli import common

if TYPE_CHECKING:
    from engram.bundle import BundleReport

cube_app = typer.Typer(
    help="Cube bundles: export an owner's memories in every tier, import them elsewhere.",
    no_args_is_help=True,
)
out = Console()


def _show(report: BundleReport) -> None:
    if common.state.as_json:
        common.emit(report.as_dict())
        return
    out.print(
        f"{report.action} {report.owner}: {report.memories} memories, "
        f"{len(report.activation)} KV block(s), {len(report.parametric)} adapter version(s); "
        f"{report.files} files, {report.bytes} bytes ({report.path})",
        highlight=False,
        soft_wrap=True,
    )
    for line in [*report.notes, *(f"left out: {d}" for d in report.dropped)]:
        out.print(f"  {line}", highlight=False, soft_wrap=True)


@cube_app.command("export")
def export(
    path: Annotated[Path, typer.Argument(help="The bundle to write (a new directory or .tar).")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")] = None,
    tar: Annotated[
        bool, typer.Option("--tar", help="Write one tar file (default: when PATH ends in .tar).")
    ] = False,
) -> None:
    """Write an owner's cube (memories, histories, retention, feedback, KV blocks,
    adapters) as a bundle."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            report = memory.export_cube(path, user_id=user, agent_id=agent, tar=tar or None)
        _show(report)

    run()


@cube_app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="The bundle to read (a directory or .tar).")],
) -> None:
    """Import a bundle as its owner's cube, after verifying every file; an owner held
    already is skipped when identical, refused otherwise."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            report = memory.import_cube(path)
        _show(report)

    run()
