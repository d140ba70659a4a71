"""The MCP server: Engram's verbs as tools, over stdio (`engram mcp`) or streamable HTTP
(mounted at /mcp by `engram serve`, behind the same bearer keys as REST). The tools are
bound from the operation table (engram.ops): one tool per operation, its parameters and
descriptions the table's.

Tools call `ScopedMemory` exactly as the REST routes do, so scoping is decided in one
place. Over HTTP the caller is the key of the HTTP request that carried the tool call
(put on the ASGI scope by `McpAuth`); over stdio it is the local user.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any

import pydantic
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from mcp.types import Tool as McpTool
from pydantic import Field

import engram
from engram.errors import EngramError
from engram.memory import Memory
from engram.ops import OPERATIONS, Operation, Surface
from engram.server.access import Principal, ScopedMemory
from engram.server.schemas import result_of

PRINCIPAL_KEY = "engram.principal"
INSTRUCTIONS = (
    "Engram is this user's long-term memory. Search it before answering questions about "
    "the user or past conversations; add what is worth remembering; after answering from "
    "memories, report with memory_feedback which ones you cited and which were wrong, so "
    "later searches rank better. Owners: pass user_id (or agent_id) unless your key or "
    "the server already fixes the owner."
)
TOOLS = tuple(op.tool for op in OPERATIONS)
_KW = inspect.Parameter.KEYWORD_ONLY


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

    for op in OPERATIONS:
        server.add_tool(_tool(op, run), name=op.tool, description=op.doc)
    return server


def _tool(op: Operation, run: Callable[[Context, Callable[[ScopedMemory], Any]], Any]) -> Any:
    """`op` as an MCP tool function: the table's parameters (MCP spelling) with their
    descriptions, answering what REST answers."""
    params = op.params_on(Surface.MCP)

    def tool(ctx: Context, **kw: Any) -> dict[str, Any]:
        values = {p.name: kw.get(p.wire_name, p.default) for p in params}
        return dict(_dump(run(ctx, lambda m: result_of(op, m.call(op, values)))))

    signature = [inspect.Parameter("ctx", _KW, annotation=Context)] + [
        inspect.Parameter(
            p.wire_name,
            _KW,
            annotation=Annotated[p.annotation, Field(description=p.description)],
            default=inspect.Parameter.empty if p.required else p.json_default,
        )
        for p in params
    ]
    tool.__signature__ = inspect.Signature(signature, return_annotation=dict[str, Any])  # type: ignore[attr-defined]
    tool.__annotations__ = {
        **{p.name: p.annotation for p in signature},
        "return": dict[str, Any],
    }
    tool.__name__ = tool.__qualname__ = op.tool
    return tool


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
