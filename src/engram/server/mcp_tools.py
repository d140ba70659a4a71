"""The MCP server: Engram's verbs as tools, over stdio (`engram mcp`) or streamable HTTP
(mounted at /mcp by `engram serve`, behind the same bearer keys as REST).

Tools call `ScopedMemory` exactly as the REST routes do, so scoping is decided in one
place. Over HTTP the caller is the key of the HTTP request that carried the tool call
(put on the ASGI scope by `McpAuth`); over stdio it is the local user.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pydantic
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from mcp.types import Tool as McpTool

import engram
from engram.errors import EngramError
from engram.memory import Memory
from engram.server.access import Principal, ScopedMemory

PRINCIPAL_KEY = "engram.principal"
INSTRUCTIONS = (
    "Engram is this user's long-term memory. Search it before answering questions about "
    "the user or past conversations; add what is worth remembering; after answering from "
    "memories, report with memory_feedback which ones you cited and which were wrong, so "
    "later searches rank better. Owners: pass user_id (or agent_id) unless your key or "
    "the server already fixes the owner."
)
TOOLS = (
    "add_memory",
    "search_memories",
    "list_memories",
    "get_memory",
    "update_memory",
    "delete_memory",
    "restore_memory",
    "memory_history",
    "memory_feedback",
)


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return json.loads(value.model_dump_json())


class StrictMCPServer(MCPServer):
    """An MCPServer that refuses arguments a tool does not take (the SDK's argument
    models ignore them, so `delete_memory(hardd=true)` would archive instead of erase), and
    answers invalid arguments with Engram's error shape, as REST's 422 does."""

    _arguments: dict[str, frozenset[str]] | None = None

    async def list_tools(self) -> list[McpTool]:
        tools = await super().list_tools()
        return [
            tool.model_copy(update={"input_schema": {**tool.input_schema, **_CLOSED}})
            for tool in tools
        ]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        known = (await self._known_arguments()).get(name)
        if known is not None:
            _refuse_unknown(name, arguments, known)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as err:
            cause = err.__cause__
            if isinstance(err, UnexpectedToolError) or not isinstance(
                cause, pydantic.ValidationError
            ):
                raise
            raise ToolError(_invalid_arguments(name, cause)) from cause

    async def _known_arguments(self) -> dict[str, frozenset[str]]:
        if self._arguments is None:
            self._arguments = {
                tool.name: frozenset(tool.input_schema.get("properties", {}))
                for tool in await super().list_tools()
            }
        return self._arguments


_CLOSED = {"additionalProperties": False}
_SHOWN = 10  # unknown argument names echoed back, each cut to 64 characters


def _refuse_unknown(name: str, arguments: dict[str, Any], known: frozenset[str]) -> None:
    """ToolError naming the arguments `name` does not take, as REST answers 422."""
    unknown = sorted(set(arguments) - known)
    if not unknown:
        return
    shown = [arg if len(arg) <= 64 else arg[:64] + "..." for arg in unknown[:_SHOWN]]
    more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
    message = (
        f"unknown argument(s) {', '.join(map(repr, shown))}{more} for {name}; "
        f"it takes: {', '.join(sorted(known))}"
    )
    details = {"unknown": shown, "known": sorted(known)}
    raise ToolError(_tool_error(name, "invalid_request", message, details))


def build_mcp_server(memory: Memory, fallback: Principal | None) -> MCPServer:
    """An MCPServer whose tools act on `memory` as the calling key (HTTP) or as
    `fallback` (stdio; None means a call without a key is refused)."""
    server = StrictMCPServer(
        "engram", instructions=INSTRUCTIONS, version=engram.__version__, log_level="WARNING"
    )

    def scoped(ctx: Context) -> ScopedMemory:
        request = ctx.request_context.request
        found = getattr(request, "scope", {}).get(PRINCIPAL_KEY) if request is not None else None
        caller = found if isinstance(found, Principal) else fallback
        if caller is None:
            raise ToolError(_error("unauthorized", "this MCP endpoint needs an API key"))
        return ScopedMemory(memory, caller, source="mcp")

    def run(ctx: Context, call: Callable[[ScopedMemory], Any]) -> Any:
        try:
            return call(scoped(ctx))
        except EngramError as err:
            raise ToolError(_error(err.code, str(err))) from err

    @server.tool()
    def add_memory(
        ctx: Context,
        text: str,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        timestamp: str | None = None,
        type: str = "turn",
        role: str = "user",
        name: str | None = None,
        ttl: float | None = None,
        expires_at: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Remember a message (text said by `role`, optionally by speaker `name`).
        Returns the stored memories with their ids. `ttl` (seconds) or `expires_at` (ISO
        time): gc archives it then. A retry with the same `idempotency_key` returns the
        memory stored the first time, not a second one."""
        message = {"role": role, "content": text, "name": name}
        items = run(
            ctx,
            lambda m: m.add(
                message,
                user_id=user_id,
                agent_id=agent_id,
                session_id=session_id,
                metadata=metadata,
                timestamp=timestamp,
                memory_type=type,
                ttl=ttl,
                expires_at=expires_at,
                idempotency_key=idempotency_key,
            ),
        )
        return {"items": _dump(items)}

    @server.tool()
    def search_memories(
        ctx: Context,
        query: str,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        types: list[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> dict[str, Any]:
        """The memories most relevant to `query`, best first, with score and provenance.
        `filters` are metadata conditions, e.g. {"topic": "travel"}."""
        hits = run(
            ctx,
            lambda m: m.search(
                query,
                user_id=user_id,
                agent_id=agent_id,
                session_id=session_id,
                k=k,
                filters=filters,
                types=types,
                since=since,
                until=until,
            ),
        )
        return {"hits": _dump(hits)}

    @server.tool()
    def list_memories(
        ctx: Context,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_archived: bool = False,
    ) -> dict[str, Any]:
        """A page of memories, oldest first; pass next_cursor back for the next page."""
        page = run(
            ctx,
            lambda m: m.get_all(
                user_id=user_id,
                agent_id=agent_id,
                session_id=session_id,
                limit=limit,
                cursor=cursor,
                include_archived=include_archived,
            ),
        )
        return dict(_dump(page))

    @server.tool()
    def get_memory(
        ctx: Context, memory_id: str, user_id: str | None = None, agent_id: str | None = None
    ) -> dict[str, Any]:
        """One memory by id, with provenance and statistics."""
        item = run(ctx, lambda m: m.get(memory_id, user_id=user_id, agent_id=agent_id))
        return dict(_dump(item))

    @server.tool()
    def update_memory(
        ctx: Context,
        memory_id: str,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Correct a memory: new text and/or metadata become a new version."""
        item = run(
            ctx,
            lambda m: m.update(
                memory_id,
                text,
                metadata=metadata,
                reason=reason,
                user_id=user_id,
                agent_id=agent_id,
            ),
        )
        return dict(_dump(item))

    @server.tool()
    def delete_memory(
        ctx: Context,
        memory_id: str,
        hard: bool = False,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Archive a memory (restorable); hard=true erases it and its history for good."""
        run(
            ctx,
            lambda m: m.delete(
                memory_id, hard=hard, reason=reason, user_id=user_id, agent_id=agent_id
            ),
        )
        return {"id": memory_id, "deleted": "erased" if hard else "archived"}

    @server.tool()
    def restore_memory(
        ctx: Context,
        memory_id: str,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Bring an archived memory back."""
        item = run(
            ctx,
            lambda m: m.restore(memory_id, reason=reason, user_id=user_id, agent_id=agent_id),
        )
        return dict(_dump(item))

    @server.tool()
    def memory_history(
        ctx: Context, memory_id: str, user_id: str | None = None, agent_id: str | None = None
    ) -> dict[str, Any]:
        """Every version of a memory, oldest first: text, event, reason, time."""
        versions = run(ctx, lambda m: m.history(memory_id, user_id=user_id, agent_id=agent_id))
        return {"versions": _dump(versions)}

    @server.tool()
    def memory_feedback(
        ctx: Context,
        query: str,
        cited: list[str] | None = None,
        used: list[str] | None = None,
        wrong: list[str] | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """After answering `query` from memories: the ids your answer cited or used, and
        the retrieved ones that were wrong. Trains the owner's search ranking; returns how
        many reports were recorded and the ranking weights."""
        result = run(
            ctx,
            lambda m: m.feedback(
                query,
                cited=cited or [],
                used=used or [],
                wrong=wrong or [],
                user_id=user_id,
                agent_id=agent_id,
            ),
        )
        return dict(_dump(result))

    return server


def _error(code: str, message: str, details: Any = None) -> str:
    return json.dumps({"error": {"code": code, "message": message, "details": details}})


def _tool_error(name: str, code: str, message: str, details: Any = None) -> str:
    """The text of a tool error, prefixed as the SDK prefixes the tools' own errors."""
    return f"Error executing tool {name}: {_error(code, message, details)}"


def _invalid_arguments(name: str, err: pydantic.ValidationError) -> str:
    """Field errors without the echoed input (it may be huge or another owner's probe)."""
    errors = [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in err.errors(include_url=False, include_input=False)
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid arguments"}
    where = ".".join(first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return _tool_error(name, "invalid_request", message, {"errors": errors})
