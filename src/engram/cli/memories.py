"""The memory commands: add, search, feedback, list, show, history, delete, restore,
import, export, stats and demo. `register(app)` puts them on the main app."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from engram.cli.common import (
    AgentOpt,
    MemoryIdArg,
    SessionOpt,
    UserOpt,
    cards,
    dump,
    emit,
    err,
    opened,
    out,
    owners,
    parse_meta,
    program,
    reports_errors,
    shown,
    state,
)


@reports_errors
def add(
    text: Annotated[str, typer.Argument(help="The text to remember ('-' reads stdin).")],
    user: UserOpt = None,
    agent: AgentOpt = None,
    session: SessionOpt = None,
    name: Annotated[str | None, typer.Option(help="Speaker name.")] = None,
    role: Annotated[str, typer.Option(help="Message role.")] = "user",
    timestamp: Annotated[str | None, typer.Option(help="ISO-8601 time it happened.")] = None,
    memory_type: Annotated[str, typer.Option("--type", help="turn, fact, summary ...")] = "turn",
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="key=value (repeatable).")
    ] = None,
    ttl: Annotated[
        float | None, typer.Option(help="Seconds until gc archives it (not with --expires-at).")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="ISO-8601 time gc archives it (not with --ttl).")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="A retry with the same key stores nothing new.")
    ] = None,
) -> None:
    """Remember one message."""
    content = sys.stdin.read() if text == "-" else text
    with opened() as memory:
        items = memory.add(
            {"role": role, "content": content, "name": name},
            user_id=user,
            agent_id=agent,
            session_id=session,
            metadata=parse_meta(meta),
            timestamp=timestamp,
            memory_type=memory_type,
            source="cli",
            ttl=ttl,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
        )
    if state.as_json:
        emit([dump(i) for i in items])
    else:
        for item in items:
            out.print(f"[green]stored[/] {item.id}  ({item.provenance.owner})")


@reports_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: UserOpt = None,
    agent: AgentOpt = None,
    session: SessionOpt = None,
    k: Annotated[int, typer.Option("-k", help="How many hits.")] = 5,
    types: Annotated[list[str] | None, typer.Option("--type", help="Only these types.")] = None,
    since: Annotated[str | None, typer.Option(help="Only on/after this ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only on/before this ISO time.")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="metadata key=value.")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Retrieval pipeline name.")] = None,
) -> None:
    """Find the memories most relevant to a query, with provenance."""
    with opened() as memory:
        hits = memory.search(
            query,
            user_id=user,
            agent_id=agent,
            session_id=session,
            k=k,
            types=types,
            since=since,
            until=until,
            filters=parse_meta(where),
            pipeline=pipeline,
        )
    if state.as_json:
        emit([dump(h) for h in hits])
        return
    cards(
        f"{len(hits)} hits for {query!r}, best first (left: relevance 0-1)",
        [(f"{hit.relevance:.2f}", hit) for hit in hits],
    )


@reports_errors
def feedback(
    query: Annotated[str, typer.Argument(help="The query the answer was for.")],
    user: UserOpt = None,
    agent: AgentOpt = None,
    cited: Annotated[
        list[str] | None, typer.Option("--cited", help="Id of a memory the answer cited.")
    ] = None,
    used: Annotated[
        list[str] | None, typer.Option("--used", help="Id of a memory the answer used.")
    ] = None,
    wrong: Annotated[
        list[str] | None, typer.Option("--wrong", help="Id of a retrieved memory that was wrong.")
    ] = None,
) -> None:
    """Report which memories helped an answer (trains the owner's reranker)."""
    with opened() as memory:
        result = memory.feedback(
            query,
            cited=[memory.resolve_id(i) for i in cited or []],
            used=[memory.resolve_id(i) for i in used or []],
            wrong=[memory.resolve_id(i) for i in wrong or []],
            user_id=user,
            agent_id=agent,
        )
    if state.as_json:
        emit(dump(result))
    else:
        weights = ", ".join(f"{k} {v:.3f}" for k, v in result.weights.items())
        out.print(f"recorded {result.recorded} for {result.owner}; reranker: {weights}")


@reports_errors
def list_(
    user: UserOpt = None,
    agent: AgentOpt = None,
    session: SessionOpt = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Only these types.")] = None,
    archived: Annotated[bool, typer.Option("--archived", help="Include archived.")] = False,
) -> None:
    """List an owner's memories, oldest first, a page at a time."""
    with opened() as memory:
        page = memory.get_all(
            user_id=user,
            agent_id=agent,
            session_id=session,
            limit=limit,
            cursor=cursor,
            types=types,
            include_archived=archived,
        )
    if state.as_json:
        emit(dump(page))
        return
    cards(f"{len(page.items)} memories", [("", item) for item in page.items])
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@reports_errors
def show(memory_id: MemoryIdArg) -> None:
    """Show one memory with its provenance and statistics."""
    with opened() as memory:
        item = memory.get(memory.resolve_id(memory_id))
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


@reports_errors
def history(memory_id: MemoryIdArg) -> None:
    """Every version of a memory: what, when, why."""
    with opened() as memory:
        memory_id = memory.resolve_id(memory_id)
        versions = memory.history(memory_id)
    if state.as_json:
        emit([dump(v) for v in versions])
        return
    table = Table(title=f"history of {memory_id}", expand=True, box=box.SIMPLE_HEAD)
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


@reports_errors
def delete(
    memory_id: MemoryIdArg,
    hard: Annotated[bool, typer.Option("--hard", help="Erase for good (GDPR).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --hard.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in history).")] = None,
) -> None:
    """Archive a memory (restorable), or erase it with --hard."""
    with opened() as memory:
        memory_id = memory.resolve_id(memory_id)  # an unknown id fails before the question
        if hard and not yes:
            if not typer.confirm(f"Erase {memory_id} and its history for good?"):
                raise typer.Exit(1)
        memory.delete(memory_id, hard=hard, reason=reason, source="cli")
    if state.as_json:  # the same words as REST and MCP
        emit({"id": memory_id, "deleted": "erased" if hard else "archived"})
    else:
        out.print(f"{'erased' if hard else 'archived'} {memory_id}")


@reports_errors
def restore(memory_id: MemoryIdArg) -> None:
    """Restore an archived memory."""
    with opened() as memory:
        memory_id = memory.resolve_id(memory_id)
        item = memory.restore(memory_id, source="cli")
    if state.as_json:
        emit(dump(item))
    else:
        out.print(f"restored {memory_id} (version {item.version})")


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
    for name, fn in (
        ("add", add),
        ("search", search),
        ("feedback", feedback),
        ("list", list_),
        ("show", show),
        ("history", history),
        ("delete", delete),
        ("restore", restore),
        ("import", import_),
        ("export", export),
        ("stats", stats),
        ("demo", demo),
    ):
        app.command(name)(fn)
