"""The REST routes under /v1 (the memory verbs bound from the operation table by
rest_ops), plus /owners, /healthz and /metrics.

Endpoints are plain `def`s: FastAPI runs them in its thread pool, and the SQLite store
serializes writes (one writer lock) while reads run concurrently (WAL, a connection per
thread). Every route goes through `ScopedMemory`, so the key decides the owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

import engram
from engram.errors import ValidationError
from engram.scope import Scope
from engram.server.auth import Caller, server_state
from engram.server.errors import ERROR_RESPONSES
from engram.server.rest_ops import bind_operations
from engram.server.schemas import Health, OwnerRef, OwnersResult

_QUERY_NAMES: dict[int, frozenset[str]] = {}


def known_query(request: Request) -> None:
    """Refuse query parameters a route does not take: `?hardd=true` must not quietly
    archive instead of erasing."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = frozenset(_query_names(dependant))
        _QUERY_NAMES[id(route)] = names
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise ValidationError(
            f"unknown query parameter(s) {shown}; this route takes {sorted(names)}"
        )


def _query_names(dependant: Any) -> Iterator[str]:
    yield from (p.alias for p in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _query_names(sub)


router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES, dependencies=[Depends(known_query)])
public = APIRouter(dependencies=[Depends(known_query)])

bind_operations(router)


@router.get("/owners", response_model=OwnersResult, summary="Owners this key may act for")
def list_owners(memory: Caller) -> OwnersResult:
    """A bound key: its own owner. An admin key (or --no-auth): every owner in the store."""
    refs = [OwnerRef(owner=o, **Scope.owner_kwargs(o)) for o in memory.owners()]
    return OwnersResult(owners=refs)


@public.get("/healthz", response_model=Health, summary="Health check")
def healthz(request: Request) -> Health:
    """Liveness: answers without a key."""
    return Health(
        status="ok", version=engram.__version__, auth=server_state(request).keys is not None
    )


@public.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(request: Request) -> PlainTextResponse:
    """Request counts and latencies by route template, memories by state, owners."""
    text = server_state(request).metrics.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
