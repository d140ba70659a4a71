"""CLI commands bound from the operation table (engram.ops): the table's parameters become
typer arguments and options with the table's descriptions; a command adds only how its
result is printed (and, rarely, a terminal-only option such as --yes).

Values reach `Memory` as typed; the CLI's own conveniences are applied here once: memory
ids may be unique prefixes, key=value pairs make a metadata object."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engram.cli.common import opened, parse_meta, reports_errors
from engram.ops import REQUIRED, Operation, Param, Surface

if TYPE_CHECKING:
    from engram.memory import Memory

_KW = inspect.Parameter.KEYWORD_ONLY
Render = Callable[[Any, dict[str, Any]], None]
Prepare = Callable[["Memory", dict[str, Any], dict[str, Any]], None]


def _annotation(p: Param) -> Any:
    if p.kind in ("meta", "ids"):
        return list[str] | None  # repeated: --meta k=v --meta k2=v2, --cited ID --cited ID
    return p.annotation


def _typer(p: Param) -> Any:
    if p.argument:
        return Annotated[_annotation(p), typer.Argument(help=p.description, show_default=False)]
    metavar = {"meta": "KEY=VALUE", "ids": "ID"}.get(p.kind)
    option = typer.Option(*p.cli_flags, help=p.description, metavar=metavar)
    return Annotated[_annotation(p), option]


def _default(p: Param) -> Any:
    value = p.cli_value
    if value is REQUIRED:
        return inspect.Parameter.empty
    return None if isinstance(value, tuple) else value


def _value(memory: Memory, p: Param, raw: Any) -> Any:
    """A command-line value as the API takes it."""
    if p.kind == "meta":
        return parse_meta(raw)
    if p.kind == "id" and raw is not None:
        return memory.resolve_id(raw)
    if p.kind == "ids":
        return [memory.resolve_id(i) for i in raw or []]
    return raw


def command(
    op: Operation,
    render: Render,
    *,
    extra: Sequence[inspect.Parameter] = (),
    prepare: Prepare | None = None,
) -> Callable[..., None]:
    """The typer command of `op`: parse, run on the Memory of --home, `render(result,
    values)`. `extra` options reach `prepare(memory, values, extras)` only."""
    params = op.params_on(Surface.CLI)
    names = {e.name for e in extra}

    def run(**kw: Any) -> None:
        extras = {name: kw.pop(name) for name in names}
        with opened() as memory:
            values = {p.name: _value(memory, p, kw[p.name]) for p in params}
            if prepare is not None:
                prepare(memory, values, extras)
            source = {"source": "cli"} if op.provenance else {}
            result = getattr(memory, op.method)(**op.arguments(values), **source)
        render(result, values)

    signature = [
        inspect.Parameter(p.name, _KW, annotation=_typer(p), default=_default(p)) for p in params
    ] + list(extra)
    run.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    run.__annotations__ = {s.name: s.annotation for s in signature}
    run.__name__ = run.__qualname__ = op.command
    run.__doc__ = op.doc
    bound = reports_errors(run)
    bound.short_help = op.summary  # type: ignore[attr-defined]
    return bound


def option(name: str, annotation: Any, default: Any, *flags: str, help: str) -> inspect.Parameter:
    """A terminal-only option of one command (not an API parameter)."""
    typed = Annotated[annotation, typer.Option(*flags, help=help)]
    return inspect.Parameter(name, _KW, annotation=typed, default=default)
