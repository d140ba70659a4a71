"""The `engram` command line: add, search, list, show, history, delete, import, export, stats."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import IO, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from engram.activation.cli import kv_app
from engram.bench.cli import bench_app
from engram.config import EmbedderConfig, load_config
from engram.embed import Embedder, build_embedder
from engram.errors import EngramError, ValidationError
from engram.extract.cli import jobs_app
from engram.lifecycle.cli import register as register_lifecycle_commands
from engram.lm.cli import lm_app
from engram.memory import Memory
from engram.parametric.cli import lora_app
from engram.scope import Scope
from engram.server.cli import register as register_server_commands
from engram.types import MemoryItem, SearchHit

app = typer.Typer(
    help="Engram: a memory operating system for LLM applications.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class _State:
    home: Path | None = None
    as_json: bool = False


state = _State()

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")]
SessionOpt = Annotated[str | None, typer.Option("--session", "-s", help="Session id.")]


@app.callback()
def _global(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Store directory (default: $ENGRAM_HOME or ~/.engram)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    state.home, state.as_json = home, as_json


def _fail(code: str, message: str, exit_code: int) -> None:
    if state.as_json:
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(exit_code)


def reports_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Engram errors become a one-line message and exit code 2 (bad input) or 1."""

    @wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            _fail(exc.code, str(exc), 2)
        except EngramError as exc:
            _fail(exc.code, str(exc), 1)
        raise AssertionError("unreachable")

    return run


@functools.cache
def _embedder(settings: str) -> Embedder:
    """One embedder per process and configuration (the model loads once)."""
    return build_embedder(EmbedderConfig.model_validate_json(settings))


@contextmanager
def opened() -> Iterator[Memory]:
    """The Memory of --home. The embedding model loads only when a command embeds
    (add, search, import, demo); list, show, history, export ... never load it."""
    overrides: dict[str, Any] = {} if state.home is None else {"home": state.home}
    config = load_config(**overrides)
    memory = Memory(
        config, embedder=functools.partial(_embedder, config.embedder.model_dump_json())
    )
    try:
        yield memory
    finally:
        memory.close()


def _owners(memory: Memory, user: str | None, agent: str | None) -> list[dict[str, str | None]]:
    """The owner named by -u/-a (validated by the API, "" included), else every owner."""
    if user is not None or agent is not None:
        return [{"user_id": user, "agent_id": agent}]
    return [dict(Scope.owner_kwargs(owner)) for owner in memory.owners()]


@contextmanager
def _replacing(path: Path) -> Iterator[IO[str]]:
    """A temporary file next to `path`, renamed over it only when the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _emit(payload: Any) -> None:
    print(json.dumps(payload, ensure_ascii=False, default=str))


def _dump(obj: Any) -> Any:
    return json.loads(obj.model_dump_json())


def _meta(pairs: list[str] | None) -> dict[str, Any] | None:
    """key=value pairs; values parsed as JSON when they can be (numbers, true, ...)."""
    if not pairs:
        return None
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"expected key=value, got {pair!r}")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def _when(item: MemoryItem | SearchHit) -> str:
    ts = item.provenance.timestamp or item.created_at
    return ts.strftime("%Y-%m-%d %H:%M")


def _source(item: MemoryItem | SearchHit) -> str:
    p = item.provenance
    parts = [p.session_id or "", p.source_id or "", p.name or p.role or ""]
    return " ".join(x for x in parts if x)


def _items_table(items: list[MemoryItem], title: str) -> Table:
    table = Table(title=title, show_lines=False, expand=True)
    table.add_column("id", style="dim", no_wrap=True, max_width=10)
    table.add_column("type", no_wrap=True)
    table.add_column("when", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("memory", ratio=1)
    for item in items:
        style = "dim" if item.state.value == "archived" else None
        table.add_row(item.id[:8], item.type, _when(item), _source(item), item.memory, style=style)
    return table


@app.command()
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
) -> None:
    """Remember one message."""
    content = sys.stdin.read() if text == "-" else text
    with opened() as memory:
        items = memory.add(
            {"role": role, "content": content, "name": name},
            user_id=user,
            agent_id=agent,
            session_id=session,
            metadata=_meta(meta),
            timestamp=timestamp,
            memory_type=memory_type,
            source="cli",
        )
    if state.as_json:
        _emit([_dump(i) for i in items])
    else:
        for item in items:
            out.print(f"[green]stored[/] {item.id}  ({item.provenance.owner})")


@app.command()
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
            filters=_meta(where),
            pipeline=pipeline,
        )
    if state.as_json:
        _emit([_dump(h) for h in hits])
        return
    table = Table(title=f"{len(hits)} hits for {query!r}", expand=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("when", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("memory", ratio=1)
    table.add_column("id", style="dim", no_wrap=True, max_width=10)
    for hit in hits:
        table.add_row(f"{hit.score:.3f}", _when(hit), _source(hit), hit.memory, hit.id[:8])
    out.print(table)


@app.command()
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
            cited=cited or [],
            used=used or [],
            wrong=wrong or [],
            user_id=user,
            agent_id=agent,
        )
    if state.as_json:
        _emit(_dump(result))
    else:
        weights = ", ".join(f"{k} {v:.3f}" for k, v in result.weights.items())
        out.print(f"recorded {result.recorded} for {result.owner}; reranker: {weights}")


@app.command("list")
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
        _emit(_dump(page))
        return
    out.print(_items_table(page.items, f"{len(page.items)} memories"))
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@app.command()
@reports_errors
def show(memory_id: Annotated[str, typer.Argument(help="Memory id.")]) -> None:
    """Show one memory with its provenance and statistics."""
    with opened() as memory:
        item = memory.get(memory_id)
    if state.as_json:
        _emit(_dump(item))
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


@app.command()
@reports_errors
def history(memory_id: Annotated[str, typer.Argument(help="Memory id.")]) -> None:
    """Every version of a memory: what, when, why."""
    with opened() as memory:
        versions = memory.history(memory_id)
    if state.as_json:
        _emit([_dump(v) for v in versions])
        return
    table = Table(title=f"history of {memory_id}", expand=True)
    for col in ("v", "event", "at", "reason", "memory"):
        table.add_column(col, ratio=1 if col == "memory" else None)
    for v in versions:
        table.add_row(
            str(v.version),
            v.event.value,
            v.at.strftime("%Y-%m-%d %H:%M:%S"),
            v.reason or "",
            v.memory or "",
        )
    out.print(table)


@app.command()
@reports_errors
def delete(
    memory_id: Annotated[str, typer.Argument(help="Memory id.")],
    hard: Annotated[bool, typer.Option("--hard", help="Erase for good (GDPR).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --hard.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in history).")] = None,
) -> None:
    """Archive a memory (restorable), or erase it with --hard."""
    with opened() as memory:
        if hard and not yes:
            memory.get(memory_id)  # an unknown id fails before the question
            if not typer.confirm(f"Erase {memory_id} and its history for good?"):
                raise typer.Exit(1)
        memory.delete(memory_id, hard=hard, reason=reason)
    if state.as_json:
        _emit({"id": memory_id, "deleted": "hard" if hard else "archived"})
    else:
        out.print(f"{'erased' if hard else 'archived'} {memory_id}")


@app.command()
@reports_errors
def restore(memory_id: Annotated[str, typer.Argument(help="Memory id.")]) -> None:
    """Restore an archived memory."""
    with opened() as memory:
        item = memory.restore(memory_id)
    if state.as_json:
        _emit(_dump(item))
    else:
        out.print(f"restored {memory_id} (version {item.version})")


@app.command("import")
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

    from engram.importers import import_file

    with (
        opened() as memory,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=state.as_json,
        ) as bar,
    ):
        task = bar.add_task(f"importing {path.name}", total=None)
        report = import_file(
            memory,
            path,
            fmt,  # type: ignore[arg-type]
            user_id=user,
            user_prefix=prefix,
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
        _emit(summary)
    else:
        out.print(
            f"imported {report.rows} turns for {report.owners} owners in {report.seconds:.1f} s "
            f"({report.rows_per_s:.0f} turns/s): {report.stored} stored, "
            f"{report.skipped} already there"
        )


@app.command()
@reports_errors
def export(
    user: UserOpt = None,
    agent: AgentOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    archived: Annotated[bool, typer.Option("--archived", help="Include archived.")] = False,
) -> None:
    """Export memories as JSON lines (all owners unless one is given)."""
    with opened() as memory:
        scopes = _owners(memory, user, agent)
        if output is None:
            _write_export(memory, scopes, archived, sys.stdout)
            return
        try:
            with _replacing(output) as sink:
                count = _write_export(memory, scopes, archived, sink)
        except OSError as exc:
            _fail("output_error", f"cannot write {output}: {exc.strerror or exc}", 1)
    err.print(f"exported {count} memories to {output}")


def _write_export(
    memory: Memory, scopes: list[dict[str, str | None]], archived: bool, sink: IO[str]
) -> int:
    count = 0
    for scope in scopes:
        for item in memory.iter_all(**scope, include_archived=archived):
            sink.write(item.model_dump_json() + "\n")
            count += 1
    return count


@app.command()
@reports_errors
def stats(user: UserOpt = None, agent: AgentOpt = None) -> None:
    """Counts per owner (all owners unless one is given)."""
    with opened() as memory:
        rows = [memory.stats(**scope) for scope in _owners(memory, user, agent)]
        location = str(memory.config.sqlite_path)
    if state.as_json:
        _emit({"store": location, "owners": [_dump(r) for r in rows]})
        return
    table = Table(title=f"store {location}")
    for col in ("owner", "active", "archived", "sessions", "types", "from", "to"):
        table.add_column(col)
    for r in rows:
        types = ", ".join(f"{k} {v}" for k, v in sorted(r.by_type.items()))
        table.add_row(
            r.owner,
            str(r.active),
            str(r.archived),
            str(r.sessions),
            types,
            f"{r.first_at:%Y-%m-%d}" if r.first_at else "",
            f"{r.last_at:%Y-%m-%d}" if r.last_at else "",
        )
    out.print(table)


DEMO_QUERIES = [
    "Where did Maya move to?",
    "what is the dog called",
    "How did the wedding speech go?",
    "Tomas knee injury and running",
]


@app.command()
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
                    f"  {hit.score:6.2f}  [dim]{p.source_id} {p.timestamp:%d %b %Y}[/] "
                    f"{p.name}: {hit.memory}",
                    highlight=False,
                )
            out.print()
        engram = f"{_program()} --home {_shown(memory.config.home)}"
    out.print(
        f"Try: {engram} search 'greyhound' -u maya-tomas   |   {engram} list -u maya-tomas",
        highlight=False,
        soft_wrap=True,
    )


def _program() -> str:
    """How this engram was started: `engram` when that is the one on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "engram":
        return "engram"
    on_path = shutil.which("engram")
    if on_path and Path(on_path).resolve() == argv0.resolve():
        return "engram"
    return shlex.quote(str(argv0))


def _shown(path: Path) -> str:
    """A path as short as it can be from here (relative inside the working directory)."""
    here, full = Path.cwd().resolve(), path.resolve()
    return shlex.quote(str(full.relative_to(here) if full.is_relative_to(here) else path))


app.add_typer(bench_app, name="bench")
app.add_typer(kv_app, name="kv")
app.add_typer(lm_app, name="lm")
app.add_typer(lora_app, name="lora")
app.add_typer(jobs_app, name="jobs")
register_server_commands(app)  # serve, keys, mcp
register_lifecycle_commands(app)  # gc, pin, unpin, retention


def _command(args: list[str]) -> str | None:
    """The command: the first argument that is neither a global option nor its value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--home":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def normalize_argv(args: list[str]) -> list[str]:
    """`--json` is global; accept it after the command too (`engram search q --json`).
    `engram bench ...` has its own `--json`."""
    if "--json" in args and _command(args) != "bench":
        return ["--json", *[a for a in args if a != "--json"]]
    return args


def main() -> None:
    app(args=normalize_argv(sys.argv[1:]), prog_name="engram")


if __name__ == "__main__":
    main()
