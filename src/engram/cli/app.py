"""The `engram` app: the global options, every command group, and `main()`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from engram.cli import (
    ask,
    bench,
    cube,
    jobs,
    kv,
    lifecycle,
    lm,
    lora,
    memories,
    migrate,
    models,
    mounts,
    serve,
    tiers,
    worker,
)
from engram.cli.common import state

app = typer.Typer(
    help="Engram: a memory operating system for LLM applications.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


memories.register(app)  # add, search, feedback, list, show, ... demo
ask.register(app)  # ask
mounts.register(app)  # mount, unmount, mounts
app.add_typer(bench.bench_app, name="bench")
app.add_typer(kv.kv_app, name="kv")
app.add_typer(lm.lm_app, name="lm")
app.add_typer(lora.lora_app, name="lora")
app.add_typer(models.models_app, name="models")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(cube.cube_app, name="cube")
app.add_typer(tiers.tiers_app, name="tiers")
serve.register(app)  # serve, keys, mcp
lifecycle.register(app)  # gc, pin, unpin, retention
worker.register(app)  # worker
migrate.register(app)  # migrate


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
