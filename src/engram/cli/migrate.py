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
    from engram.store.migrate import MigrationReport, OwnerDump

out = Console()
err = Console(stderr=True)


def _api_keys(home: Path) -> dict[str, object]:
    """API keys live in `$ENGRAM_HOME/keys.db`, never in the memory store: they stay."""
    path = home / "keys.db"
    if not path.is_file():
        return {"path": str(path), "keys": 0, "moved": False}
    from engram.server.keys import KeyStore

    store = KeyStore(path)
    try:
        count = len(store.list(include_revoked=False))
    finally:
        store.close()
    return {"path": str(path), "keys": count, "moved": False}


def _progress(owner: str, step: str, dump: OwnerDump) -> None:
    memories = len(dump.tables["memories"])
    if common.state.as_json:
        common.emit({"event": "owner", "owner": owner, "step": step, "memories": memories})
    else:
        err.print(f"{step} {owner}: {memories} memories", highlight=False)


def _show(report: MigrationReport, keys: dict[str, object]) -> None:
    if common.state.as_json:
        common.emit({"event": "done", **report.as_dict(), "api_keys": keys})
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
    if keys["keys"]:
        out.print(
            f"API keys: {keys['keys']} stay in {keys['path']} (keys are never in the memory "
            "store); copy that file to the ENGRAM_HOME of each server on the new database",
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
) -> None:
    """Copy every owner (memories, histories, feedback, retention, jobs) into the target store."""

    @common.reports_errors
    def run() -> None:
        from engram.store.migrate import migrate as copy

        home = Path(common.load_settings().home)  # where the API keys are
        report = copy(source, target, merge=merge, progress=_progress)
        _show(report, _api_keys(home))

    run()


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
