"""`engram migrate --from URL --to URL`: copy a store (SQLite or PostgreSQL) into a
PostgreSQL database or a SQLite file, owner by owner, verifying row counts and checksums per table.

Only typer and rich load here; the stores open when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from engram.cli import common

if TYPE_CHECKING:
    from engram.store.keys import KeyStore
    from engram.store.migrate import MigrationReport, OwnerDump

out = Console()
err = Console(stderr=True)


def _progress(owner: str, step: str, dump: OwnerDump) -> None:
    memories = len(dump.tables["memories"])
    if common.state.as_json:
        common.emit({"event": "owner", "owner": owner, "step": step, "memories": memories})
    else:
        err.print(f"{step} {owner}: {memories} memories", highlight=False)


def _show(report: MigrationReport) -> None:
    if common.state.as_json:
        common.emit({"event": "done", **report.as_dict()})
        return
    table = Table(title=f"{report.source} -> {report.target} (verified)")
    for column in ("table", "rows", "sha256"):
        table.add_column(column)
    for name, row in report.tables.items():
        table.add_row(name, str(row["rows"]), str(row["sha256"])[:16])
    out.print(table)
    out.print(
        f"{len(report.copied)} owner(s) copied, {len(report.skipped)} already there "
        "(identical, skipped)",
        highlight=False,
    )
    if report.keys is not None:
        moved = report.keys
        out.print(
            f"API keys: {len(moved.copied)} copied, {len(moved.skipped)} already there "
            f"({moved.source} -> {moved.target})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print("API keys: none at the source", highlight=False)
    files = report.artifacts
    if files is not None:
        missing = f", {len(files.missing)} missing at the source" if files.missing else ""
        out.print(
            f"KV blocks and adapters: {len(files.copied)} copied, {len(files.skipped)} "
            f"already there{missing} ({files.source} -> {files.target})",
            highlight=False,
            soft_wrap=True,
        )


def migrate(
    source: Annotated[
        str, typer.Option("--from", help="Store to copy: sqlite:///PATH or postgresql://...")
    ],
    target: Annotated[str, typer.Option("--to", help="Target: postgresql://... or sqlite:///PATH")],
    merge: Annotated[
        bool,
        typer.Option(
            "--merge", help="Add the source's owners to a target that holds other owners."
        ),
    ] = False,
    artifacts_to: Annotated[
        Path | None,
        typer.Option(
            "--artifacts-to",
            help="Also copy the owners' KV blocks and adapters into this directory (the "
            "new servers' ENGRAM_ARTIFACTS_DIR).",
        ),
    ] = None,
    artifacts_from: Annotated[
        Path | None,
        typer.Option(
            "--artifacts-from",
            help="Where the source's KV blocks and adapters are (default: the SQLite "
            "file's directory, or the configured artifacts_dir for PostgreSQL).",
        ),
    ] = None,
) -> None:
    """Copy every owner (memories, histories, feedback, retention, jobs), the API keys and,
    with --artifacts-to, the KV blocks and adapters into the target store."""

    @common.reports_errors
    def run() -> None:
        from engram.store.migrate import migrate as copy

        files = None
        if artifacts_to is not None:
            files = (artifacts_from or _artifacts_of(source), artifacts_to)
        keys = _key_stores(source, target)
        try:
            report = copy(
                source, target, merge=merge, progress=_progress, keys=keys, artifacts=files
            )
        finally:
            for store in keys or ():
                store.close()
        _show(report)

    run()


def _artifacts_of(source: str) -> Path:
    """The source's artifacts directory: a home keeps kv/ and lora/ beside engram.db."""
    if source.startswith("sqlite:///"):
        return Path(source.removeprefix("sqlite:///")).expanduser().parent
    return Path(common.load_settings().artifacts)


def _key_stores(source: str, target: str) -> tuple[KeyStore, KeyStore] | None:
    """The API key stores of both sides; None when the source has none. URLs the
    migration refuses are left for it to name."""
    from engram.store.migrate_keys import key_store

    schemes = ("sqlite:///", "postgresql://", "postgres://")
    if not (source.startswith(schemes) and target.startswith(schemes)):
        return None
    held = key_store(source, create=False)
    made = None if held is None else key_store(target, create=True)
    return None if held is None or made is None else (held, made)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
