"""What an operation is: a named verb of `Memory` with typed, documented parameters, and
how each surface (Python, REST, MCP, CLI) names and places them.

Binders (engram.server.rest_ops, engram.server.mcp_tools, engram.cli.bind) build their
routes, tools and commands from these records, so a parameter added here appears on every
surface it names. Values are validated once, by `Memory`; a binder only shapes them.
This module imports nothing heavy: `engram --help` reads the table.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class Surface(StrEnum):
    PYTHON = "python"
    REST = "rest"
    MCP = "mcp"
    CLI = "cli"


EVERYWHERE = frozenset(Surface)
REQUIRED: Any = inspect.Parameter.empty
UNSET: Any = object()

# plain: the value as typed. meta: a JSON object (CLI: repeated key=value; REST query: JSON
# text). time: ISO-8601 text. id / ids: memory ids (the CLI also takes unique prefixes).
# cube / cubes: owners whose cubes are read (REST and MCP keys must be granted them).
Kind = Literal["plain", "meta", "time", "id", "ids", "cube", "cubes"]


@dataclass(frozen=True)
class Param:
    """One parameter: its Python name and type, its one description, and its spelling on
    the other surfaces."""

    name: str
    annotation: Any
    doc: str
    default: Any = REQUIRED
    kind: Kind = "plain"
    wire: str | None = None  # the REST/MCP field name when it is not `name`
    flags: tuple[str, ...] = ()  # CLI option names; () means --name-with-dashes
    argument: bool = False  # a CLI positional argument
    query: str | None = None  # the name in a REST query string when not wire_name
    surfaces: frozenset[Surface] = EVERYWHERE
    cli_default: Any = UNSET  # a terminal shows fewer rows than an API returns
    limits: str = ""  # the limits Memory enforces, for the docs ("1-1000")

    @property
    def wire_name(self) -> str:
        return self.wire or self.name

    @property
    def query_name(self) -> str:
        return self.query or self.wire_name

    @property
    def json_default(self) -> Any:
        """The default as JSON would carry it (a tuple default is an empty list)."""
        return list(self.default) if isinstance(self.default, tuple) else self.default

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def cli_value(self) -> Any:
        """The default on the command line (REQUIRED: the CLI asks for it)."""
        return self.default if self.cli_default is UNSET else self.cli_default

    @property
    def description(self) -> str:
        return f"{self.doc} ({self.limits})" if self.limits else self.doc

    def on(self, surface: Surface) -> bool:
        return surface in self.surfaces


Compose = Callable[[dict[str, Any]], dict[str, Any]]


def _same(values: dict[str, Any]) -> dict[str, Any]:
    return values


@dataclass(frozen=True)
class Operation:
    """A verb of `Memory` as every surface offers it.

    `target` says how the owner is found: "owner" (user_id/agent_id name it) or "memory"
    (the memory id does; user_id/agent_id only narrow). `compose` turns a surface's
    arguments (e.g. text, role and name) into the method's (messages)."""

    name: str
    method: str
    doc: str
    write: bool
    target: Literal["owner", "memory"]
    params: tuple[Param, ...]
    http: tuple[str, str]
    tool: str
    command: str
    status: int = 200
    envelope: str | None = None  # REST/MCP wrap the result as {envelope: result}
    provenance: bool = False  # the method takes source= (the surface's name)
    compose: Compose = _same
    body_optional: bool = False  # REST: the request may come without a body
    summary: str = ""

    def params_on(self, surface: Surface) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.on(surface))

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no parameter {name!r}")

    def arguments(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A surface's values (by Python name) as the method's keyword arguments."""
        return self.compose(dict(values))
