"""`Idempotency-Key` on REST writes, as Stripe does it.

A client that lost a response (timeout, dropped connection) cannot tell a write that
succeeded from one that never ran. Sent with the same `Idempotency-Key` header, a retry
gets the stored response of the first attempt instead of writing again:

- same key, same request (method, path, query, body)  → the stored response, replayed
  (`Idempotent-Replayed: true`), status and body as the first time;
- same key, another request → 422 `idempotency_key_reused`;
- same key while the first attempt still runs → 409 `idempotency_in_progress`
  (`Retry-After`);
- a write that failed stores nothing: the key is released and a retry runs again.

Keys belong to the owner the write acts for (two owners may use the same key), are kept
`server.idempotency_ttl_s` (24 h), and erasing memories of an owner erases that owner's
stored responses (they may quote the erased text). Records live in the store (migration
`0006_idempotency_keys`), so they survive restarts and are shared by server processes.
An add under a key is also safe to retry after a crash part-way through a chunked add:
see `Memory.add(idempotency_key=...)`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from engram.scope import Scope, check_id
from engram.server.access import ScopedMemory
from engram.server.auth import server_state
from engram.server.errors import ApiError

HEADER = "Idempotency-Key"
JSON = "application/json"
REPLAYED = "Idempotent-Replayed"
# A record still 'running' this long after it was claimed belongs to a process that died:
# a retry may take it over (an add under a key finds the rows the dead attempt stored).
RUNNING_LEASE_S = 600.0

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="Makes the write safe to retry: a retry with the same key and request "
        "gets the first response back instead of writing again (kept 24 h, per owner).",
    ),
]


def request_fingerprint(request: Request, body: Any) -> str:
    """What makes two requests the same: method, path, query parameters and the parsed
    body (so formatting and key order of the JSON do not matter)."""
    canonical = json.dumps(
        {
            "method": request.method,
            "path": request.url.path,
            "query": sorted(request.query_params.multi_items()),
            "body": jsonable_encoder(body),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def key_owner(
    caller: ScopedMemory,
    user_id: str | None,
    agent_id: str | None,
    memory_id: str | None = None,
) -> str | None:
    """The owner a write acts for, whose keys it uses; None when the write cannot reach any
    owner (it will fail, and a failure stores nothing)."""
    principal = caller.principal
    if principal.owner is not None:
        return principal.owner
    if memory_id is not None and user_id is None and agent_id is None:
        found = caller.memory.store.locate(memory_id)
        return None if found is None else found.owner
    return Scope.of(**principal.owner_kwargs(user_id, agent_id), required=False).owner


def idempotent(
    request: Request,
    caller: ScopedMemory,
    key: str | None,
    owner: Callable[[], str | None],
    body: Any,
    status: int,
    run: Callable[[], Any],
) -> Any:
    """Run a write route under an optional idempotency key; see the module docstring.
    The response is rendered here, in the route's worker thread: rendering a 10,000-item
    add on the event loop would hold every other owner's request for its duration."""
    if key is None:
        return rendered(run(), status)
    check_id(key, f"{HEADER} header")
    scope = owner()
    if scope is None:
        return rendered(run(), status)
    fingerprint = request_fingerprint(request, body)
    store = caller.memory.store
    ttl = server_state(request).settings.idempotency_ttl_s
    record = store.claim_idempotency(scope, key, fingerprint, ttl, RUNNING_LEASE_S)
    if record is not None:
        if record.fingerprint != fingerprint:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was used with a different request; use a new key",
            )
        if record.state != "done" or record.status is None or record.response is None:
            raise ApiError(
                409,
                "idempotency_in_progress",
                f"a request with this {HEADER} is still running; retry shortly",
                headers={"Retry-After": "1"},
            )
        return Response(
            record.response,
            status_code=record.status,
            media_type="application/json",
            headers={REPLAYED: "true"},
        )
    try:
        result = run()
    except BaseException:
        store.release_idempotency(scope, key)
        raise
    response = rendered(result, status)
    store.finish_idempotency(scope, key, status, bytes(response.body).decode("utf-8"))
    return response


def rendered(result: Any, status: int) -> Response:
    """`result` as the JSON response FastAPI would send (pydantic's serialiser for a
    model: one pass in Rust, not `jsonable_encoder` over every item)."""
    if isinstance(result, BaseModel):
        return Response(result.model_dump_json(), status_code=status, media_type=JSON)
    return JSONResponse(jsonable_encoder(result), status_code=status)
