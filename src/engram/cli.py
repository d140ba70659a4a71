"""The `engram` command line: add, search, list, show, history, delete, import, export, stats."""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from engram.activation.cli import kv_app
from engram.bench.cli import bench_app
from engram.errors import EngramError, ValidationError
from engram.extract.cli import jobs_app
from engram.lifecycle.cli import register as register_lifecycle_commands
from engram.lm.cli import lm_app
from engram.parametric.cli import lora_app
from engram.server.cli import register as register_server_commands

if TYPE_CHECKING:  # loaded when a command runs: `engram --help` imports typer and rich only
    from engram.embed import Embedder
    from engram.memory import Memory
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
MemoryIdArg = Annotated[str, typer.Argument(help="Memory id, or a unique prefix of it.")]
SessionOpt = Annotated[str | None, typer.Option("--session", "-s", help="Session id.")]


def _print_version(value: bool) -> None:
    if value:
        from engram._version import __version__

        print(f"engram {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Store directory (default: $ENGRAM_HOME or ~/.engram)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    state.home, state.as_json = home, as_json


# The API's argument names, as the user typed them here.
_FLAGS = {
    "user_id": "-u/--user",
    "agent_id": "-a/--agent",
    "session_id": "-s/--session",
    "memory_id": "the memory ID",
}
_PYTHON_ARGS = re.compile(r"\b(" + "|".join(_FLAGS) + r")\b")


def cli_words(message: str) -> str:
    """An API error message with Python argument names replaced by this CLI's flags."""
    return _PYTHON_ARGS.sub(lambda m: _FLAGS[m.group(1)], message)


def _fail(code: str, message: str, exit_code: int) -> None:
    message = cli_words(message)
    if state.as_json:
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        # soft wrap: the terminal folds long lines; no newline lands inside a path
        from rich.markup import escape  # a message may hold brackets: engram-os[server]

        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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
    from engram.config import EmbedderConfig
    from engram.embed import build_embedder

    return build_embedder(EmbedderConfig.model_validate_json(settings))


@contextmanager
def opened() -> Iterator[Memory]:
    """The Memory of --home. The embedding model loads only when a command embeds
    (add, search, import, demo); list, show, history, export ... never load it."""
    from engram.config import load_config
    from engram.memory import Memory

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
    from engram.scope import Scope

    return [dict(Scope.owner_kwargs(owner)) for owner in memory.owners()]


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


def _cards(title: str, rows: list[tuple[str, MemoryItem | SearchHit]]) -> None:
    """One memory per card: a line of who/when/id, then its text over the full width,
    indented. Reads at 80 columns, where a table squeezes the text to a word a line."""
    from rich.padding import Padding
    from rich.text import Text

    out.print(f"[bold]{title}[/]", highlight=False)
    for lead, item in rows:
        state_ = getattr(item, "state", None)  # a SearchHit is never archived
        archived = state_ is not None and state_.value == "archived"
        head = Text(f"{lead:>7}  " if lead else "")
        head.append(_when(item), style="cyan")
        head.append(f"  {_source(item)}  " if _source(item) else "  ")
        head.append(f"{item.type}  " if item.type != "turn" else "")
        head.append(item.id[:8], style="dim")
        if archived:
            head.append("  archived", style="yellow")
        out.print(head, highlight=False)
        text = Text(item.memory, style="dim" if archived else "")
        out.print(Padding(text, (0, 0, 0, 9 if lead else 2)), highlight=False)


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
    _cards(
        f"{len(hits)} hits for {query!r}, best first (left: relevance 0-1)",
        [(f"{hit.relevance:.2f}", hit) for hit in hits],
    )


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
            cited=[memory.resolve_id(i) for i in cited or []],
            used=[memory.resolve_id(i) for i in used or []],
            wrong=[memory.resolve_id(i) for i in wrong or []],
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
    _cards(f"{len(page.items)} memories", [("", item) for item in page.items])
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@app.command()
@reports_errors
def show(memory_id: MemoryIdArg) -> None:
    """Show one memory with its provenance and statistics."""
    with opened() as memory:
        item = memory.get(memory.resolve_id(memory_id))
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
def history(memory_id: MemoryIdArg) -> None:
    """Every version of a memory: what, when, why."""
    with opened() as memory:
        memory_id = memory.resolve_id(memory_id)
        versions = memory.history(memory_id)
    if state.as_json:
        _emit([_dump(v) for v in versions])
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


@app.command()
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
        _emit({"id": memory_id, "deleted": "erased" if hard else "archived"})
    else:
        out.print(f"{'erased' if hard else 'archived'} {memory_id}")


@app.command()
@reports_errors
def restore(memory_id: MemoryIdArg) -> None:
    """Restore an archived memory."""
    with opened() as memory:
        memory_id = memory.resolve_id(memory_id)
        item = memory.restore(memory_id, source="cli")
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
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Export memories as JSON lines (all owners unless one is given)."""
    from engram.exporting import export_file, write_jsonl

    with opened() as memory:
        scopes = _owners(memory, user, agent)
        if output is None:
            write_jsonl(memory, scopes, sys.stdout, archived)
            return
        count = export_file(memory, output, scopes, include_archived=archived, force=force)
    err.print(f"exported {count} memories to {output}")


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
    out.print(f"store {location}", highlight=False, soft_wrap=True)
    for r in rows:  # a card per owner: an owner id is never cut, at any width
        types = ", ".join(f"{k} {v}" for k, v in sorted(r.by_type.items())) or "no types"
        first = f"{r.first_at:%Y-%m-%d}" if r.first_at else ""
        last = f"{r.last_at:%Y-%m-%d}" if r.last_at else ""
        span = f"  {first} – {last}" if first else ""
        out.print(f"[bold]{r.owner}[/]", highlight=False, soft_wrap=True)
        out.print(
            f"  {r.active} active, {r.archived} archived, {r.sessions} sessions;"
            f"  {types};{span}",
            highlight=False,
        )

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
                    f"  {hit.relevance:4.2f}  [dim]{p.source_id} {p.timestamp:%d %b %Y}[/] "
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


def _plain_flags(command: Any) -> None:
    """Flags take no value: show `--json`, not typer's `--json <bool>`, in every help."""
    from typer._click.core import Context

    for param in [*command.params, command.get_help_option(Context(command))]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)


def command() -> Any:
    """The click command behind `app`, as `engram` runs it."""
    import typer.main

    built = typer.main.get_command(app)
    _plain_flags(built)
    return built


def main() -> None:
    command()(args=normalize_argv(sys.argv[1:]), prog_name="engram")


if __name__ == "__main__":
    main()
