"""docs/server.md lists exactly the app's REST routes and the MCP server's tools."""

from __future__ import annotations

import re
from pathlib import Path

import anyio

from engram import Memory
from engram.server.access import Principal
from engram.server.app import MCP_PATH, create_app
from engram.server.mcp_tools import build_mcp_server

DOC = (Path(__file__).resolve().parent.parent / "docs" / "server.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def _no_model() -> None:
    raise AssertionError("listing routes must not load the embedding model")


def test_every_rest_route_is_documented(tmp_path: Path) -> None:
    with Memory(home=tmp_path, embedder=_no_model) as memory:
        app = create_app(memory, None)
        spec = app.openapi()
    served = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    documented = set(re.findall(r"^\| `([A-Z]+)` \| `(/[^`]*)` \|", _section("REST routes"), re.M))
    assert documented == served
    assert f"`{MCP_PATH}`" in DOC


def test_every_mcp_tool_is_documented(tmp_path: Path) -> None:
    with Memory(home=tmp_path, embedder=_no_model) as memory:
        server = build_mcp_server(memory, Principal.local())
        tools = {t.name for t in anyio.run(server.list_tools)}
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", _section("MCP"), re.M))
    assert documented == tools
