"""`engram serve`, `engram keys create|ls|revoke` and `engram mcp` (stdio).

Only typer is imported here: FastAPI, uvicorn and the MCP SDK load when a command runs,
so the rest of the CLI starts as fast as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from engram.cli import common

if TYPE_CHECKING:
    from engram.store.keys import KeyStore

T = TypeVar("T")

keys_app = typer.Typer(
    help="API keys for `engram serve` (stored hashed, in keys.db or the PostgreSQL store).",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def _announce(url: str, needs_key: bool) -> None:
    """What a person needs once the server answers: where, and how to get in."""
    lines = [
        f"[bold green]Engram is ready[/]: web page {url}/",
        f"  REST {url}/v1 (docs at {url}/docs), MCP {url}/mcp",
    ]
    if needs_key:
        lines.append("  a key for the page and the API: engram keys create --owner NAME")
    for line in lines:
        err.print(line, highlight=False, soft_wrap=True)


def _serve_announcing(config: Any, needs_key: bool) -> None:
    """uvicorn's server, announcing the URL once it listens (uvicorn imported on use)."""
    import uvicorn

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            for server in self.servers if self.started else []:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    _announce(f"http://{f'[{host}]' if ':' in host else host}:{port}", needs_key)
                    return

    Announcing(config).run()


def _shown_owner(owner: str | None) -> str:
    """'user:alice' -> 'alice' (how --owner takes it); agents keep their prefix."""
    if owner is None:
        return "*"
    return owner.removeprefix("user:")


def _warm_bulk_path(memory: Any) -> None:
    """Load the bulk encoder (torch) in the background now, not during the first large
    add, where importing it would hold the GIL for seconds while other owners wait."""
    import threading

    batch = [f"warm-up {i}" for i in range(memory.config.embedder.small_batch + 1)]
    threading.Thread(target=memory.embedder.embed, args=(batch,), daemon=True).start()


def _share_cores_with_queries() -> None:
    """A bulk add must not starve other owners' searches: queries embed on the numpy
    encoder with one BLAS thread, bulk batches on torch with every core but one (both
    before numpy and torch load; the environment or `embedder.bulk_threads` overrides)."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))


def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default server.port).")] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="No API keys: anyone who can connect has every owner."),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the REST API (/v1, docs at /docs), MCP (/mcp) and the web page (/)."""

    @common.reports_errors
    def run() -> None:
        from engram.extras import require_extra

        require_extra("server", "`engram serve`")
        _share_cores_with_queries()
        import uvicorn

        from engram.server.app import create_app
        from engram.store.keys import open_keys

        with common.opened() as memory:
            settings = memory.config.server.model_copy(
                update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
            )
            keys = None if no_auth else open_keys(memory.config)
            if keys is None:
                err.print(
                    "[bold red]WARNING: --no-auth: no API keys are checked. Anyone who can "
                    f"reach {settings.host}:{settings.port} can read, change and erase "
                    "every owner's memories. Use it only for local single-user work.[/]",
                    highlight=False,
                )
            elif not keys.list(include_revoked=False):
                err.print(
                    "[yellow]No API keys yet: create one with "
                    "`engram keys create --owner alice`.[/]",
                    highlight=False,
                )
            memory.embedder.embed_one("warm-up")  # load the model before the first request
            _warm_bulk_path(memory)
            app = create_app(memory, keys, settings)
            config = uvicorn.Config(
                app, host=settings.host, port=settings.port, log_level=log_level
            )
            _serve_announcing(config, needs_key=keys is not None)

    run()


@keys_app.command("create")
def keys_create(
    owner: Annotated[
        str | None,
        typer.Option(help="Owner the key acts for: alice (a user) or agent:bot."),
    ] = None,
    scope: Annotated[str, typer.Option(help="read, write or admin (every owner).")] = "write",
    reads: Annotated[
        list[str] | None,
        typer.Option(
            "--read",
            help="Also read this owner's cube where the key's owner mounts it, e.g. "
            "agent:team (repeatable; never writes it).",
        ),
    ] = None,
) -> None:
    """Create a key; the token is printed once (only its hash is stored)."""

    @common.reports_errors
    def run() -> None:
        token, key = _keys(lambda keys: keys.create(owner, scope, reads or ()))
        shown = _shown_owner(key.owner) if key.owner else None
        if common.state.as_json:
            print(
                json.dumps(
                    {
                        "key": token,
                        "id": key.id,
                        "owner": shown,
                        "scope": key.scope,
                        "reads": list(key.reads),
                    }
                )
            )
            return
        granted = f"; reads {', '.join(key.reads)}" if key.reads else ""
        out.print(
            f"[green]created[/] key {key.id} ({key.scope.value}, owner {shown or '*'}{granted})"
        )
        out.print("Keep it now; it is not shown again:", highlight=False)
        print(token)

    run()


@keys_app.command("ls")
def keys_ls(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List keys (ids, owners, scopes; never the tokens)."""

    @common.reports_errors
    def run() -> None:
        keys = _keys(lambda store: store.list(include_revoked=all_keys))
        if common.state.as_json:
            rows = [{**k.model_dump(mode="json"), "owner": _shown_owner(k.owner)} for k in keys]
            print(json.dumps(rows))
            return
        table = Table(title=f"{len(keys)} API keys")
        for col in ("id", "owner", "scope", "reads", "created", "revoked"):
            table.add_column(col)
        for k in keys:
            revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
            created = f"{k.created_at:%Y-%m-%d %H:%M}"
            reads = ", ".join(k.reads)
            table.add_row(k.id, _shown_owner(k.owner), k.scope.value, reads, created, revoked)
        out.print(table)

    run()


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (from `keys ls`).")]) -> None:
    """Revoke a key; requests with it get 401 from then on."""

    @common.reports_errors
    def run() -> None:
        key = _keys(lambda keys: keys.revoke(key_id))
        if common.state.as_json:
            print(json.dumps({"id": key.id, "revoked": True}))
        else:
            out.print(f"revoked {key.id}")

    run()


def mcp(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Default owner: user id.")
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Default owner: agent id.")
    ] = None,
) -> None:
    """Serve the MCP tools over stdio (for MCP hosts that start `engram mcp`)."""

    @common.reports_errors
    def run() -> None:
        from engram.extras import require_extra

        require_extra("server", "`engram mcp`")
        import anyio

        from engram.scope import Scope
        from engram.server.access import Principal
        from engram.server.mcp_tools import build_mcp_server

        default = Scope.of(user, agent, required=False).owner
        with common.opened() as memory:
            server = build_mcp_server(memory, fallback=Principal.local(default))
            anyio.run(server.run_stdio_async)

    run()


def _keys(action: Callable[[KeyStore], T]) -> T:
    """Run `action` on the key store of the configured store, then close it."""
    from engram.store.keys import open_keys

    keys = open_keys(common.load_settings())
    try:
        return action(keys)
    finally:
        keys.close()


def register(app: typer.Typer) -> None:
    """Add `serve`, `keys` and `mcp` to the main `engram` app."""
    app.command()(serve)
    app.add_typer(keys_app, name="keys")
    app.command()(mcp)
