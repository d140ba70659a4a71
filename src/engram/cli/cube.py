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
    from engram.fuse import FuseReport

cube_app = typer.Typer(
    help="Cube bundles: export an owner's memories in every tier, import them elsewhere; "
    "fuse one owner's cube into another's.",
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
    if report.action == "updated":
        added = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in report.added.items())
        out.print(f"  added: {added}", highlight=False, soft_wrap=True)
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


def _show_fuse(report: FuseReport) -> None:
    if common.state.as_json:
        common.emit(report.as_dict())
        return
    verb = "would fuse" if report.dry_run else "fused"
    counts = ", ".join(f"{report.count(k)} {k}" for k in ("merge", "conflict", "add", "skip"))
    out.print(f"{verb} {report.source} into {report.into}: {counts}", highlight=False)
    for a in report.actions:
        d = a.as_dict()
        pair = f"{d['source_id']} v{d['source_version']}"
        if d["target_id"]:
            pair += f" -> {d['target_id']}"
        score = "" if d["score"] is None else f" {d['score']:.3f}"
        out.print(f"  {a.action:<8} {pair}{score}  {a.reason}", highlight=False, soft_wrap=True)


@cube_app.command("fuse")
def fuse(
    source: Annotated[str, typer.Argument(help="The owner to fuse from, e.g. user:bob.")],
    into: Annotated[str, typer.Argument(help="The owner to fuse into, e.g. user:alice.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would merge, conflict or be added.")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Cosine of a near-duplicate (default 0.95)."),
    ] = None,
) -> None:
    """Merge SOURCE's cube into INTO's (same home): near-duplicates merge, conflicts become
    new versions, the rest is copied with provenance; SOURCE is left unchanged."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            report = memory.fuse_cube(source, into, dry_run=dry_run, threshold=threshold)
        _show_fuse(report)

    run()
