"""`create_app`: one ASGI app serving REST (/v1), MCP (/mcp) and the web page (/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

import engram
from engram.config import ServerConfig
from engram.errors import NotFoundError
from engram.memory import Memory
from engram.scope import Scope as OwnerScope
from engram.server.auth import ServerState
from engram.server.chat import chat
from engram.server.errors import ApiError, error_response, install_error_handlers
from engram.server.limits import BodyLimitMiddleware
from engram.server.mcp_tools import PRINCIPAL_KEY, build_mcp_server
from engram.server.metrics import Metrics, MetricsMiddleware
from engram.server.routes import public, router
from engram.server.routes_insights import insights
from engram.server.web import mount_web
from engram.store.keys import KeyStore

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MCP_PATH = "/mcp"


def store_counts(memory: Memory) -> dict[str, int]:
    """Active and archived memories and owners over the whole store (for /metrics)."""
    counts = {"active": 0, "archived": 0, "owners": 0}
    for owner in memory.owners():
        try:
            stats = memory.stats(**OwnerScope.owner_kwargs(owner))
        except NotFoundError:  # erased meanwhile
            continue
        counts["active"] += stats.active
        counts["archived"] += stats.archived
        counts["owners"] += 1
    return counts


class McpEndpoint:
    """/mcp: authenticates the bearer key (as REST does), puts the caller on the ASGI
    scope for the tools, then hands the request to the SDK's streamable-HTTP manager."""

    def __init__(self, state: ServerState, handler: StreamableHTTPASGIApp | None = None):
        self.state, self.handler = state, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        host = client[0] if client else "unknown"
        authorization = Headers(scope=scope).get("authorization")
        try:
            caller = await anyio.to_thread.run_sync(self.state.authenticate, authorization, host)
        except ApiError as err:
            response = error_response(err.status, err.code, err.message, err.details, err.headers)
            await response(scope, receive, send)
            return
        if self.handler is None:  # the app's lifespan has not started
            response = error_response(503, "unavailable", "the MCP endpoint is not running")
            await response(scope, receive, send)
            return
        scope[PRINCIPAL_KEY] = caller
        await self.handler(scope, receive, send)


def create_app(
    memory: Memory,
    keys: KeyStore | None,
    settings: ServerConfig | None = None,
    *,
    mcp: bool = True,
) -> FastAPI:
    """The server app over `memory`. `keys=None` serves without authentication
    (`--no-auth`: every caller is the local user, with access to every owner)."""
    settings = settings or memory.config.server
    state = ServerState(memory, keys, settings, Metrics(lambda: store_counts(memory)))
    mcp_server = build_mcp_server(memory, fallback=None) if mcp else None
    endpoint = McpEndpoint(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if mcp_server is None:
            yield
            return
        # a fresh session manager per start (one can run only once)
        mcp_server.streamable_http_app(stateless_http=True, json_response=True, host=settings.host)
        manager = mcp_server.session_manager
        async with manager.run():
            endpoint.handler = StreamableHTTPASGIApp(manager)
            try:
                yield
            finally:
                endpoint.handler = None

    app = FastAPI(
        title="Engram",
        version=engram.__version__,
        summary="Memory for LLM apps: REST API (this page), MCP at /mcp, web page at /.",
        lifespan=lifespan,
    )
    app.state.engram = state
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(insights)
    app.include_router(public)
    app.include_router(chat)
    if mcp_server is not None:
        app.router.routes.append(
            Route(MCP_PATH, endpoint=endpoint, methods=["GET", "POST", "DELETE"])
        )

    # -- web memory browser: engram.server.web adds the page at / here ----------------
    mount_web(app)
    # ---------------------------------------------------------------------------------

    if keys is None and settings.host in LOOPBACK:
        # no key protects a --no-auth server: refuse other Host names (DNS rebinding)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
