"""The REST routes of the memory verbs, bound from the operation table (engram.ops).

For each operation: its path parameters come from the path, its other parameters from a
strict JSON body (POST, PATCH; the owner of a by-id write stays in the query string) or
from the query string (GET, DELETE), and writes take an `Idempotency-Key` header. Each
route calls `ScopedMemory.call`, the one place that checks the key and resolves the owner.
"""

from __future__ import annotations

import inspect
import json
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, create_model

from engram.errors import ValidationError
from engram.ops import OPERATIONS, Operation, Param, Surface
from engram.ops.table import AGENT, USER
from engram.server.auth import Caller
from engram.server.idempotency import IdempotencyKey, idempotent, key_owner
from engram.server.schemas import RESULTS, Body, IsoTime, MessageIn, result_of

_KW = inspect.Parameter.KEYWORD_ONLY
# REST's own spelling of a parameter's type where JSON gives it more shape than Python's.
_BODY_TYPES: dict[str, Any] = {"messages": list[MessageIn] | None}


def _path(op: Operation) -> set[str]:
    return {p.name for p in op.params if "{" + p.name + "}" in op.http[1]}


def _in_body(op: Operation, p: Param) -> bool:
    """POST and PATCH carry values in the body, except a by-id write's owner (query)."""
    if op.http[0] not in ("POST", "PATCH") or p.name == "idempotency_key":
        return False
    return not (op.target == "memory" and p.name in ("user_id", "agent_id"))


def _annotation(p: Param) -> Any:
    if p.name in _BODY_TYPES:
        return _BODY_TYPES[p.name]
    if p.kind == "time":
        return IsoTime | None
    return p.annotation


def _default(p: Param) -> Any:
    return ... if p.required else p.json_default


def body_model(op: Operation) -> type[Body] | None:
    """The strict request body of `op`, or None when it takes none."""
    fields = {
        p.wire_name: (_annotation(p), Field(_default(p), description=p.description))
        for p in op.params_on(Surface.REST)
        if p.name not in _path(op) and _in_body(op, p)
    }
    if not fields:
        return None
    name = "".join(w.capitalize() for w in op.name.split("_")) + "Body"
    model: type[Body] = create_model(name, __base__=Body, __doc__=op.doc, **fields)  # type: ignore[call-overload]
    return model


def _query(p: Param) -> Any:
    annotation = str | None if p.kind == "meta" else p.annotation
    return Annotated[annotation, Query(alias=p.query_name, description=p.description)]


def _from_query(p: Param, raw: Any) -> Any:
    """`filters` and other JSON objects arrive as JSON text in a query string."""
    if p.kind != "meta" or raw is None:
        return raw
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValidationError(f"{p.query_name} must be a JSON object") from err
    if not isinstance(value, dict):
        raise ValidationError(f"{p.query_name} must be a JSON object")
    return value


def _field(body: Body | None, p: Param) -> Any:
    """A body field as Python values (nested messages as plain dicts)."""
    if body is None:
        return p.default
    value = getattr(body, p.wire_name)
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return [v.model_dump(exclude_none=True) for v in value]
    return value


def _route(op: Operation) -> Any:
    path, body = _path(op), body_model(op)
    params = op.params_on(Surface.REST)
    in_query = [p for p in params if p.name not in path and not _in_body(op, p)]
    in_query = [p for p in in_query if p.name != "idempotency_key"]
    in_body = [p for p in params if p.name not in path and _in_body(op, p)]
    optional_body = body is not None and op.body_optional

    def endpoint(request: Request, memory: Caller, **kw: Any) -> Any:
        values: dict[str, Any] = {name: kw[name] for name in path}
        sent = kw.get("body")
        values |= {p.name: _field(sent, p) for p in in_body}
        values |= {p.name: _from_query(p, kw[p.name]) for p in in_query}
        key = kw.get("idempotency_key")
        if any(p.name == "idempotency_key" for p in params):
            values["idempotency_key"] = key

        def run() -> Any:
            return result_of(op, memory.call(op, values))

        if not op.write:
            return run()
        owner = partial(
            key_owner,
            memory,
            values.get("user_id"),
            values.get("agent_id"),
            values.get("memory_id"),
        )
        return idempotent(request, memory, key, owner, sent, op.status, run)

    signature = [
        inspect.Parameter("request", _KW, annotation=Request),
        inspect.Parameter("memory", _KW, annotation=Caller),
        *(
            inspect.Parameter(
                name, _KW, annotation=Annotated[str, Path(description=op.param(name).doc)]
            )
            for name in path
        ),
        *(
            [
                inspect.Parameter(
                    "body",
                    _KW,
                    annotation=body | None if optional_body else body,
                    default=None if optional_body else inspect.Parameter.empty,
                )
            ]
            if body is not None
            else []
        ),
        *(
            inspect.Parameter(
                p.name,
                _KW,
                annotation=_query(p),
                default=p.default if not p.required else inspect.Parameter.empty,
            )
            for p in in_query
        ),
        *(
            [inspect.Parameter("idempotency_key", _KW, annotation=IdempotencyKey, default=None)]
            if op.write
            else []
        ),
    ]
    endpoint.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    endpoint.__name__ = endpoint.__qualname__ = op.tool
    endpoint.__doc__ = op.doc
    return endpoint


def bind_operations(router: APIRouter) -> None:
    """Every operation of the table as a route on `router`."""
    for op in OPERATIONS:
        method, path = op.http
        router.add_api_route(
            path,
            _route(op),
            methods=[method],
            status_code=op.status,
            response_model=RESULTS[op.name],
            summary=op.summary,
            description=op.doc,
            name=op.tool,
        )


# The owner in a query string, for the routes outside the table (insights, web views).
UserQ = _query(USER)
AgentQ = _query(AGENT)
