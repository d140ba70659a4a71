"""The operation table (engram.ops) is the one definition of every memory verb: this test
walks it and checks that each surface -- the Python method, the REST route (its OpenAPI
schema), the MCP tool (its input schema) and the CLI command -- exposes exactly the
table's parameters, and that a bad value of every validated parameter is refused on all
four with the same error code and the same message."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import typer
from fastapi.testclient import TestClient
from mcp import Client
from typer.testing import CliRunner

from _server_helpers import make_keys
from engram import EngramError, Memory
from engram.aio import AsyncMemory
from engram.cli import app
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.ops import OPERATIONS, Operation, Param, Surface
from engram.scope import Scope
from engram.server.access import Principal
from engram.server.app import create_app
from engram.server.mcp_tools import build_mcp_server
from engram.store.sqlite_keys import SQLiteKeyStore

runner = CliRunner()
IDS = [op.name for op in OPERATIONS]
PROVENANCE = {"source"}  # set by each surface to its own name, never by a caller

# A refused value for every parameter the table says is validated (time kinds and
# parameters with limits). A parameter added with limits must get an example here.
BAD: dict[str, Any] = {
    "ttl": -1,
    "k": 0,
    "limit": 0,
    "since": "not a time",
    "until": "31/02/2024",
    "timestamp": "yesterday",
    "expires_at": "soon",
    "text": "x" * 70,  # over limits.max_text_chars below
    "query": "q" * 70,  # over limits.max_query_chars below
    "question": "q" * 70,
    "max_tokens": 0,  # over limits.max_query_chars below
}
LIMITS = {"max_text_chars": 64, "max_query_chars": 64}


def _validated(op: Operation) -> list[Param]:
    return [p for p in op.params if p.kind == "time" or p.limits]


def _rest_params(schema: dict[str, Any], op: Operation) -> set[str]:
    method, path = op.http
    entry = schema["paths"]["/v1" + path][method.lower()]
    names = {p["name"] for p in entry.get("parameters", [])}
    body = entry.get("requestBody", {}).get("content", {}).get("application/json", {})
    shapes = body.get("schema", {})
    for shape in shapes.get("anyOf", [shapes]):  # an optional body: its model or null
        if "$ref" in shape:
            model = schema["components"]["schemas"][shape["$ref"].rsplit("/", 1)[1]]
            names |= set(model["properties"])
    return names


def _rest_expected(op: Operation) -> set[str]:
    names = {"Idempotency-Key"} if op.write else set()  # every REST write may be retried
    for p in op.params_on(Surface.REST):
        if p.name == "idempotency_key":
            names.add("Idempotency-Key")  # a header, as HTTP APIs carry it
        elif op.http[0] == "GET" and not op.http[1].endswith("{" + p.name + "}"):
            names.add(p.query_name)
        else:
            names.add(p.wire_name)
    return names


@pytest.fixture
def memory(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    """The home's config.toml sets the limits, so the CLI on the same home has them too."""
    lines = [f"{name} = {value}" for name, value in LIMITS.items()]
    (tmp_path / "config.toml").write_text("[limits]\n" + "\n".join(lines) + "\n")
    with Memory(home=tmp_path, embedder=embedder) as mem:
        assert mem.config.limits.max_text_chars == LIMITS["max_text_chars"]
        yield mem


# -- every surface has every parameter ---------------------------------------------------


@pytest.mark.parametrize("op", OPERATIONS, ids=IDS)
def test_python_methods_take_the_table_parameters(op: Operation) -> None:
    for cls in (Memory, AsyncMemory):
        signature = inspect.signature(getattr(cls, op.method))
        taken = {n: p for n, p in signature.parameters.items() if n != "self"}
        table = {p.name: p for p in op.params_on(Surface.PYTHON)}
        assert set(taken) - PROVENANCE == set(table), (cls.__name__, op.name)
        assert (set(taken) & PROVENANCE) == ({"source"} if op.provenance else set())
        for name, param in table.items():
            default = taken[name].default
            # a parameter the surfaces may omit (one of text/messages) is required in Python
            if not (param.surfaces != frozenset(Surface) and default is inspect.Parameter.empty):
                assert default == param.default, (op.name, name)


def test_rest_routes_take_the_table_parameters(memory: Memory, tmp_path: Path) -> None:
    schema = create_app(memory, SQLiteKeyStore(tmp_path / "keys.db"), ServerConfig()).openapi()
    for op in OPERATIONS:
        assert _rest_params(schema, op) == _rest_expected(op), op.name
        method, path = op.http
        assert schema["paths"]["/v1" + path][method.lower()]["description"] == op.doc


def test_mcp_tools_take_the_table_parameters(memory: Memory) -> None:
    server = build_mcp_server(memory, Principal.local(Scope.of(user_id="alice").owner))

    async def tools() -> dict[str, Any]:
        async with Client(server) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    listed = anyio.run(tools)
    for op in OPERATIONS:
        tool = listed[op.tool]
        properties = tool.input_schema["properties"]
        expected = {p.wire_name: p for p in op.params_on(Surface.MCP)}
        assert set(properties) == set(expected), op.name
        for name, p in expected.items():
            assert properties[name].get("description") == p.description, (op.name, name)
        assert tool.description == op.doc


def test_cli_commands_take_the_table_parameters() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    terminal_only = {"yes"}  # the confirmation of `delete --hard`
    for op in OPERATIONS:
        command = commands[op.command]
        names = {p.name for p in command.params} - terminal_only
        assert names == {p.name for p in op.params_on(Surface.CLI)}, op.name
        for param in command.params:
            if param.name in terminal_only:
                continue
            help_text = getattr(param, "help", None)
            if help_text is not None:  # typer keeps arguments' help on the rich panel
                assert help_text == op.param(param.name).description, (op.name, param.name)


def test_every_validated_parameter_has_a_bad_example() -> None:
    missing = {p.name for op in OPERATIONS for p in _validated(op)} - set(BAD)
    assert not missing, f"add a refused value for {sorted(missing)} to BAD"


# -- the same refusal everywhere -----------------------------------------------------------


def _base_values(op: Operation, memory_id: str) -> dict[str, Any]:
    """The least each surface needs for `op` to reach validation."""
    values: dict[str, Any] = {}
    for p in op.params:
        if p.name == "memory_id":
            values[p.name] = memory_id
        elif p.name in ("text", "query", "question") and p.on(Surface.CLI):
            values[p.name] = "ok"
    return values


def _python(memory: Memory, op: Operation, values: dict[str, Any]) -> tuple[str, str]:
    args = {**values, "user_id": "alice"}
    with pytest.raises(EngramError) as info:
        getattr(memory, op.method)(**op.arguments(args))
    return info.value.code, str(info.value)


def _rest(client: TestClient, headers: dict[str, str], op: Operation, values: dict[str, Any]):
    method, path = op.http
    url = "/v1" + path.format(**values)
    sent = {op.param(n).wire_name: v for n, v in values.items() if "{" + n + "}" not in path}
    if method == "GET":
        query = {op.param(n).query_name: v for n, v in values.items() if "{" + n + "}" not in path}
        answer = client.request(method, url, params=query, headers=headers)
    else:
        answer = client.request(method, url, json=sent, headers=headers)
    assert answer.status_code in (400, 422), answer.text
    error = answer.json()["error"]
    return error["code"], error["message"]


def _mcp(memory: Memory, op: Operation, values: dict[str, Any]) -> tuple[str, str]:
    server = build_mcp_server(memory, Principal.local(Scope.of(user_id="alice").owner))
    arguments = {op.param(n).wire_name: v for n, v in values.items()}

    async def call() -> Any:
        async with Client(server) as client:
            return await client.call_tool(op.tool, arguments)

    result = anyio.run(call)
    assert result.is_error
    text = result.content[0].text  # "Error executing tool NAME: {json}"
    error = json.loads(text[text.index("{") :])["error"]
    return error["code"], error["message"]


def _cli(home: Path, op: Operation, values: dict[str, Any]) -> tuple[str, str]:
    args = ["--home", str(home), "--json", op.command]
    for p in op.params_on(Surface.CLI):
        if p.name not in values:
            continue
        if p.argument:
            args.append(str(values[p.name]))
        else:
            args += [p.cli_flags[0], str(values[p.name])]
    done = runner.invoke(app, [*args, "-u", "alice"])
    assert done.exit_code == 2, done.output
    error = json.loads(done.stdout)["error"]
    return error["code"], error["message"]


def _cases() -> list[Any]:
    return [
        pytest.param(op, p, id=f"{op.name}-{p.name}") for op in OPERATIONS for p in _validated(op)
    ]


@pytest.mark.parametrize(("op", "param"), _cases())
def test_a_bad_value_is_refused_alike_on_every_surface(
    op: Operation, param: Param, memory: Memory, tmp_path: Path
) -> None:
    [item] = memory.add("a memory to act on", user_id="alice")
    values = {**_base_values(op, item.id), param.name: BAD[param.name]}
    keys = SQLiteKeyStore(tmp_path / "keys.db")
    alice = make_keys(keys).alice
    answers: dict[Surface, tuple[str, str]] = {}
    if param.on(Surface.PYTHON):
        answers[Surface.PYTHON] = _python(memory, op, values)
    if param.on(Surface.REST):
        server = create_app(memory, keys, ServerConfig(rate_limit_per_s=0))
        with TestClient(server, base_url="http://localhost") as client:
            answers[Surface.REST] = _rest(client, alice, op, values)
    if param.on(Surface.MCP):
        answers[Surface.MCP] = _mcp(memory, op, values)
    if param.on(Surface.CLI):
        answers[Surface.CLI] = _cli(tmp_path, op, values)
    assert len(answers) >= 3, answers
    codes = {code for code, _ in answers.values()}
    assert codes == {"invalid_input"}, answers
    messages = {message for _, message in answers.values()}
    assert len(messages) == 1, answers
    said = {"text": "content", "ttl": "ttl must be a positive"}.get(param.name, param.name)
    assert said in next(iter(messages)), answers  # says what was wrong


def test_the_api_docs_example_of_the_table_runs() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    start = text.index("## The same verbs on every surface")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "docs/api.md", "exec"), {})  # noqa: S102 - the docs' own code
