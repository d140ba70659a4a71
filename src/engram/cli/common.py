"""What every `engram` command shares: the global --home/--json state, the Memory of
--home, error reporting, JSON output and the memory cards. Imports typer and rich only."""

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
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from engram.errors import EngramError, ValidationError

if TYPE_CHECKING:  # loaded when a command runs: `engram --help` imports typer and rich only
    from engram.config import EngramConfig
    from engram.embed import Embedder
    from engram.memory import Memory
    from engram.store.jobs import Job
    from engram.types import MemoryItem, SearchHit

out = Console()
err = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class State:
    """The global options, set by the app's callback before a command runs."""

    home: Path | None = None
    as_json: bool = False


state = State()

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")]
MemoryIdArg = Annotated[str, typer.Argument(help="Memory id, or a unique prefix of it.")]
SessionOpt = Annotated[str | None, typer.Option("--session", "-s", help="Session id.")]


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


def int_list(text: str, hint: str | None = None) -> tuple[int, ...]:
    """A comma-separated list of integers (an option's value)."""
    import typer

    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise typer.BadParameter(
            f"expected comma-separated integers, got {text!r}", param_hint=hint
        ) from err


@functools.cache
def _embedder(settings: str, recorded: str | None = None) -> Embedder:
    """One embedder per process and configuration (the model loads once); `recorded`, the
    store's embedder, is what `embedder.adapter = "auto"` follows."""
    from engram.config import EmbedderConfig
    from engram.embed import build_embedder

    return build_embedder(EmbedderConfig.model_validate_json(settings), recorded)


@contextmanager
def opened() -> Iterator[Memory]:
    """The Memory of --home. The embedding model loads only when a command embeds
    (add, search, import, demo); list, show, history, export ... never load it."""
    from engram.config import load_config
    from engram.memory import Memory

    overrides: dict[str, Any] = {} if state.home is None else {"home": state.home}
    config = load_config(**overrides)
    settings = config.embedder.model_dump_json()
    memory = Memory(config, embedder=lambda: _embedder(settings, memory.store.recorded_embedder()))
    try:
        yield memory
    finally:
        memory.close()


def owners(memory: Memory, user: str | None, agent: str | None) -> list[dict[str, str | None]]:
    """The owner named by -u/-a (validated by the API, "" included), else every owner."""
    if user is not None or agent is not None:
        return [{"user_id": user, "agent_id": agent}]
    from engram.scope import Scope

    return [dict(Scope.owner_kwargs(owner)) for owner in memory.owners()]


def emit(payload: Any) -> None:
    print(json.dumps(payload, ensure_ascii=False, default=str))


def dump(obj: Any) -> Any:
    return json.loads(obj.model_dump_json())


def parse_meta(pairs: list[str] | None) -> dict[str, Any] | None:
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


def load_settings() -> EngramConfig:
    """The configuration of --home (defaults < file < environment < --home)."""
    from engram.config import load_config

    return load_config(**({} if state.home is None else {"home": state.home}))


def _when(item: MemoryItem | SearchHit) -> str:
    ts = item.provenance.timestamp or item.created_at
    return ts.strftime("%Y-%m-%d %H:%M")


def _source(item: MemoryItem | SearchHit) -> str:
    p = item.provenance
    parts = [p.session_id or "", p.source_id or "", p.name or p.role or ""]
    return " ".join(x for x in parts if x)


def cards(title: str, rows: list[tuple[str, MemoryItem | SearchHit]]) -> None:
    """One memory per card: a line of who/when/id, then its text over the full width,
    indented. Reads at 80 columns, where a table squeezes the text to a word a line.
    Hits of several cubes (an owner's and its mounts) name their cube."""
    composed = len({getattr(item, "cube", None) for _, item in rows}) > 1
    from rich.padding import Padding
    from rich.text import Text

    out.print(f"[bold]{title}[/]", highlight=False)
    for lead, item in rows:
        state_ = getattr(item, "state", None)  # a SearchHit is never archived
        archived = state_ is not None and state_.value == "archived"
        head = Text(f"{lead:>7}  " if lead else "")
        head.append(_when(item), style="cyan")
        if composed:
            head.append(f"  {getattr(item, 'cube', '')}", style="magenta")
        head.append(f"  {_source(item)}  " if _source(item) else "  ")
        head.append(f"{item.type}  " if item.type != "turn" else "")
        head.append(item.id[:8], style="dim")
        if archived:
            head.append("  archived", style="yellow")
        out.print(head, highlight=False)
        text = Text(item.memory, style="dim" if archived else "")
        out.print(Padding(text, (0, 0, 0, 9 if lead else 2)), highlight=False)


def program() -> str:
    """How this engram was started: `engram` when that is the one on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "engram":
        return "engram"
    on_path = shutil.which("engram")
    if on_path and Path(on_path).resolve() == argv0.resolve():
        return "engram"
    return shlex.quote(str(argv0))


def shown(path: Path) -> str:
    """A path as short as it can be from here (relative inside the working directory)."""
    here, full = Path.cwd().resolve(), path.resolve()
    return shlex.quote(str(full.relative_to(here) if full.is_relative_to(here) else path))


def job_fields(job: Job) -> dict[str, Any]:
    """A job as `engram jobs ls --json` and `engram worker --json` print it."""
    return {
        "id": job.id,
        "owner": job.owner,
        "session_id": job.session_id,
        "extractor": job.extractor,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "result": job.result,
    }
