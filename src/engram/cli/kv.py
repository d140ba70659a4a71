"""`engram kv build|ls|rm|stats`: activation memories (stored KV caches) of a cube.

Only typer and rich load here; torch and transformers load when a command needs them.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from engram.cli import common

kv_app = typer.Typer(
    help="Activation memory: stored, compressed KV caches for a local model.",
    no_args_is_help=True,
)
out = Console()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"


@kv_app.command("build")
def build(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")] = None,
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Memory id (or unique prefix) to use; repeatable."),
    ] = None,
    top: Annotated[int | None, typer.Option(help="The N most-accessed memories.")] = None,
    recent: Annotated[int | None, typer.Option(help="The N newest memories.")] = None,
    model: Annotated[
        str | None, typer.Option(help="transformers checkpoint (default kv.model).")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="Compression chain (default kv.method).")
    ] = None,
) -> None:
    """Materialize an owner's memories as a stored KV cache for a local model."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            block = memory.kv.build(
                user_id=user,
                agent_id=agent,
                ids=[memory.resolve_id(i) for i in ids] if ids else None,
                top=top,
                recent=recent,
                method=method,
                model=model,
            )
        key = block.key
        summary = {
            "key": key,
            "tokens": block.n_tokens,
            "method": block.method_name or "none",
            "bytes": block.nbytes,
            "fp16_bytes": block.fp16_nbytes,
            "memories": len(block.meta["memory_ids"]),
        }
        if common.state.as_json:
            common.emit(summary)
        else:
            out.print(
                f"stored {key}: {block.n_tokens} tokens of {summary['memories']} memories, "
                f"{_mib(block.nbytes)} ({block.nbytes / block.fp16_nbytes:.2f}x fp16), "
                f"method {summary['method']}",
                highlight=False,
            )

    run()


@kv_app.command("ls")
def ls() -> None:
    """List stored KV caches."""

    @common.reports_errors
    def run() -> None:
        from engram.activation.memories import kv_store

        entries = kv_store(common.load_settings()).entries()
        if common.state.as_json:
            common.emit([{**e.__dict__} for e in entries])
            return
        table = Table(title=f"{len(entries)} stored KV caches")
        table.add_column("key", no_wrap=True)
        for col in ("owner", "tokens", "method", "size", "vs fp16", "created"):
            table.add_column(col)
        for e in entries:
            method = "+".join(step["name"] for step in json.loads(e.method))
            table.add_row(
                e.key,
                str(e.meta.get("owner", "")),
                str(e.n_tokens),
                method or "none",
                _mib(e.nbytes),
                f"{e.nbytes / max(e.fp16_nbytes, 1):.2f}x",
                e.created_at,
            )
        out.print(table)

    run()


@kv_app.command("rm")
def rm(key: Annotated[str, typer.Argument(help="Key shown by `engram kv ls`.")]) -> None:
    """Delete a stored KV cache."""

    @common.reports_errors
    def run() -> None:
        with common.opened() as memory:
            memory.kv.rm(key)  # the block and what the store recorded about it
        if common.state.as_json:
            common.emit({"key": key, "deleted": True})
        else:
            out.print(f"deleted {key}")

    run()


@kv_app.command("stats")
def stats() -> None:
    """Entries, tokens and bytes of the KV store."""

    @common.reports_errors
    def run() -> None:
        from engram.activation.memories import kv_store

        result = kv_store(common.load_settings()).stats()
        if common.state.as_json:
            common.emit(result)
            return
        for name, value in result.items():
            out.print(f"  [dim]{name:>18}[/]  {value}", highlight=False)

    run()
