"""The memory commands: the operation table's verbs (add, search, feedback, list, show,
history, update, delete, restore: bound by engram.cli.bind, printed here) and import,
export, stats and demo. `register(app)` puts them on the main app."""

from __future__ import annotations

import dataclasses
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from engram.cli.bind import command, option
from engram.cli.common import (
    AgentOpt,
    UserOpt,
    cards,
    dump,
    emit,
    err,
    opened,
    out,
    owners,
    program,
    reports_errors,
    shown,
    state,
)
from engram.ops.table import (
    ADD,
    DELETE,
    FEEDBACK,
    GET,
    HISTORY,
    LIST,
    RESTORE,
    SEARCH,
    TIERS,
    UPDATE,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from engram.memory import Memory
    from engram.tiers import Holding
    from engram.types import (
        DeleteResult,
        FeedbackResult,
        MemoryItem,
        Page,
        SearchHit,
        Version,
    )


def _stored(items: list[MemoryItem], values: dict[str, Any]) -> None:
    if state.as_json:
        emit([dump(i) for i in items])
        return
    for item in items:
        out.print(f"[green]stored[/] {item.id}  ({item.provenance.owner})")


def _stdin(memory: Memory, values: dict[str, Any], extras: dict[str, Any]) -> None:
    if values.get("text") == "-":
        values["text"] = sys.stdin.read()


def _hits(hits: list[SearchHit], values: dict[str, Any]) -> None:
    if state.as_json:
        emit([dump(h) for h in hits])
        return
    cards(
        f"{len(hits)} hits for {values['query']!r}, best first (left: relevance 0-1)",
        [(f"{hit.relevance:.2f}", hit) for hit in hits],
    )


def _recorded(result: FeedbackResult, values: dict[str, Any]) -> None:
    if state.as_json:
        emit(dump(result))
        return
    weights = ", ".join(f"{k} {v:.3f}" for k, v in result.weights.items())
    out.print(f"recorded {result.recorded} for {result.owner}; reranker: {weights}")


def _page(page: Page, values: dict[str, Any]) -> None:
    if state.as_json:
        emit(dump(page))
        return
    cards(f"{len(page.items)} memories", [("", item) for item in page.items])
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


def _shown(item: MemoryItem, values: dict[str, Any]) -> None:
    if state.as_json:
        emit(dump(item))
        return
    out.print(f"[bold]{item.memory}[/]")
    fields = {
        "id": item.id,
        "type": item.type,
        "state": item.state.value,
        "version": item.version,
        "created": item.created_at,
        "updated": item.updated_at,
        "accessed": f"{item.access_count} times, last {item.last_accessed_at or 'never'}",
        "metadata": json.dumps(item.metadata, ensure_ascii=False),
        **{f"provenance.{k}": v for k, v in item.provenance.model_dump().items() if v is not None},
    }
    for key, value in fields.items():
        out.print(f"  [dim]{key:>22}[/]  {value}", highlight=False)


def _versions(versions: list[Version], values: dict[str, Any]) -> None:
    if state.as_json:
        emit([dump(v) for v in versions])
        return
    table = Table(title=f"history of {values['memory_id']}", expand=True, box=box.SIMPLE_HEAD)
    for col in ("v", "event", "at", "reason", "memory"):
        table.add_column(col, ratio=1 if col == "memory" else None, no_wrap=col in ("v", "at"))
    for v in versions:
        table.add_row(
            str(v.version),
            v.event.value,
            v.at.strftime("%Y-%m-%d %H:%M"),
            v.reason or "",
            v.memory or "",
        )
    out.print(table)


def _held(held: list[Holding], values: dict[str, Any]) -> None:
    if state.as_json:
        emit([dataclasses.asdict(h) for h in held])
        return
    for h in held:
        note = "" if h.current else "  (built from an older version)"
        out.print(f"{h.tier:<11} {h.key}  v{h.memory_version}{note}")


def _changed(word: str) -> Callable[[MemoryItem, dict[str, Any]], None]:
    def render(item: MemoryItem, values: dict[str, Any]) -> None:
        if state.as_json:
            emit(dump(item))
        else:
            out.print(f"{word} {item.id} (version {item.version})")

    return render


def _confirm(memory: Memory, values: dict[str, Any], extras: dict[str, Any]) -> None:
    """--hard asks first (the id was resolved already: an unknown id fails before)."""
    if values["hard"] and not extras["yes"]:
        if not typer.confirm(f"Erase {values['memory_id']} and its history for good?"):
            raise typer.Exit(1)


def _deleted(result: DeleteResult, values: dict[str, Any]) -> None:
    if state.as_json:  # the same words as REST and MCP
        emit(dump(result))
    else:
        out.print(f"{result.deleted} {result.id}")


YES = option("yes", bool, False, "--yes", "-y", help="Do not ask before --hard.")
TABLE_COMMANDS = {
    "add": command(ADD, _stored, prepare=_stdin),
    "search": command(SEARCH, _hits),
    "feedback": command(FEEDBACK, _recorded),
    "list": command(LIST, _page),
    "show": command(GET, _shown),
    "history": command(HISTORY, _versions),
    "where": command(TIERS, _held),
    "update": command(UPDATE, _changed("updated")),
    "delete": command(DELETE, _deleted, extra=[YES], prepare=_confirm),
    "restore": command(RESTORE, _changed("restored")),
}


@reports_errors
def import_(
    path: Annotated[Path, typer.Argument(help="LoCoMo-format JSON or JSON-lines file.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, locomo or jsonl.")] = "auto",
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Owner for lines that name none.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Prefix for LoCoMo sample ids as owners.")] = "",
) -> None:
    """Import conversations (idempotent: turns with a known source id are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from engram.importers import plan_import, run_import

    with opened() as memory:
        # the whole file is checked before anything is written or any bar is drawn
        plan = plan_import(path, fmt, user, prefix, memory=memory)  # type: ignore[arg-type]
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=state.as_json,
        ) as bar:
            task = bar.add_task(f"importing {path.name}", total=plan.rows)
            report = run_import(
                memory,
                plan,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    summary = {
        "format": report.format,
        "owners": report.owners,
        "rows": report.rows,
        "stored": report.stored,
        "skipped": report.skipped,
        "archived": report.archived,
        "seconds": round(report.seconds, 2),
        "rows_per_s": round(report.rows_per_s, 1),
    }
    if state.as_json:
        emit(summary)
    else:
        out.print(
            f"imported {report.rows} turns for {report.owners} owners in {report.seconds:.1f} s "
            f"({report.rows_per_s:.0f} turns/s): {report.stored} stored, "
            f"{report.skipped} already there"
        )


@reports_errors
def export(
    user: UserOpt = None,
    agent: AgentOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    archived: Annotated[bool, typer.Option("--archived", help="Include archived.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Export memories as JSON lines (all owners unless one is given)."""
    from engram.exporting import export_file, write_jsonl

    with opened() as memory:
        scopes = owners(memory, user, agent)
        if output is None:
            write_jsonl(memory, scopes, sys.stdout, archived)
            return
        count = export_file(memory, output, scopes, include_archived=archived, force=force)
    err.print(f"exported {count} memories to {output}")


@reports_errors
def stats(user: UserOpt = None, agent: AgentOpt = None) -> None:
    """Counts per owner (all owners unless one is given)."""
    with opened() as memory:
        rows = [memory.stats(**scope) for scope in owners(memory, user, agent)]
        location = str(memory.config.sqlite_path)
    if state.as_json:
        emit({"store": location, "owners": [dump(r) for r in rows]})
        return
    out.print(f"store {location}", highlight=False, soft_wrap=True)
    for r in rows:  # a card per owner: an owner id is never cut, at any width
        types = ", ".join(f"{k} {v}" for k, v in sorted(r.by_type.items())) or "no types"
        first = f"{r.first_at:%Y-%m-%d}" if r.first_at else ""
        last = f"{r.last_at:%Y-%m-%d}" if r.last_at else ""
        span = f"  {first} – {last}" if first else ""
        out.print(f"[bold]{r.owner}[/]", highlight=False, soft_wrap=True)
        out.print(
            f"  {r.active} active, {r.archived} archived, {r.sessions} sessions;  {types};{span}",
            highlight=False,
        )


DEMO_QUERIES = [
    "Where did Maya move to?",
    "what is the dog called",
    "How did the wedding speech go?",
    "Tomas knee injury and running",
]


@reports_errors
def demo() -> None:
    """Import the bundled sample conversation and answer a few searches with provenance."""
    from engram.importers import import_file

    sample = resources.files("engram") / "data" / "sample_conversation.json"
    with resources.as_file(sample) as path, opened() as memory:
        report = import_file(memory, path)
        out.print(
            f"[bold]Imported[/] {report.rows} turns of a 3-session conversation "
            f"({report.stored} new) into {memory.config.sqlite_path}\n"
        )
        for query in DEMO_QUERIES:
            out.print(f"[bold cyan]? {query}[/]")
            for hit in memory.search(query, user_id="maya-tomas", k=3):
                p = hit.provenance
                out.print(
                    f"  {hit.relevance:4.2f}  [dim]{p.source_id} {p.timestamp:%d %b %Y}[/] "
                    f"{p.name}: {hit.memory}",
                    highlight=False,
                )
            out.print()
        engram = f"{program()} --home {shown(memory.config.home)}"
    out.print(
        f"Try: {engram} search 'greyhound' -u maya-tomas   |   {engram} list -u maya-tomas",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Put the memory commands on `app`, in the order `engram --help` lists them."""
    commands: tuple[tuple[str, Callable[..., None]], ...] = (
        *((n, TABLE_COMMANDS[n]) for n in ("add", "search", "feedback", "list", "show")),
        *((n, TABLE_COMMANDS[n]) for n in ("history", "where", "update", "delete", "restore")),
        ("import", import_),
        ("export", export),
        ("stats", stats),
        ("demo", demo),
    )
    for name, fn in commands:
        app.command(name, short_help=getattr(fn, "short_help", None))(fn)
