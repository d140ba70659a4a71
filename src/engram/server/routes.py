"""The REST routes under /v1, plus /healthz and /metrics.

Endpoints are plain `def`s: FastAPI runs them in its thread pool, and the SQLite store
serializes writes (one writer lock) while reads run concurrently (WAL, a connection per
thread). Every route goes through `ScopedMemory`, so the key decides the owner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

import engram
from engram.errors import ValidationError
from engram.scope import Scope
from engram.server.auth import Caller, server_state
from engram.server.errors import ERROR_RESPONSES
from engram.server.idempotency import IdempotencyKey, idempotent, key_owner
from engram.server.schemas import (
    AddBody,
    AddResult,
    DeleteResult,
    FeedbackBody,
    Health,
    HistoryResult,
    IsoTime,
    OwnerRef,
    OwnersResult,
    RestoreBody,
    SearchBody,
    SearchResult,
    UpdateBody,
)
from engram.types import FeedbackResult, MemoryItem, Page

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

UserQ = Annotated[str | None, Query(description="Owner: a user id (bound keys may omit it).")]
AgentQ = Annotated[
    str | None, Query(description="Owner if no user_id; with a user_id, narrows to this agent.")
]
MemoryId = Annotated[str, "the memory id"]


def _filters(raw: str | None) -> dict[str, Any] | None:
    """`filters` in a query string is a JSON object."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValidationError("filters must be a JSON object of metadata conditions") from err
    if not isinstance(value, dict):
        raise ValidationError("filters must be a JSON object of metadata conditions")
    return value


@router.post("/memories", status_code=201, response_model=AddResult, summary="Add memories")
def add_memories(
    request: Request, body: AddBody, memory: Caller, idempotency_key: IdempotencyKey = None
) -> Any:
    """Store `text` or each of `messages` as a memory with provenance. A large add is
    committed in chunks (other owners' requests interleave); with an `Idempotency-Key`, a
    retry returns the first response, or completes an add that was cut short."""
    messages: Any = (
        body.text
        if body.text is not None
        else [m.model_dump(exclude_none=True) for m in body.messages or []]
    )

    def run() -> AddResult:
        items = memory.add(
            messages,
            user_id=body.user_id,
            agent_id=body.agent_id,
            session_id=body.session_id,
            metadata=body.metadata,
            timestamp=body.timestamp,
            memory_type=body.type,
            ttl=body.ttl,
            expires_at=body.expires_at,
            idempotency_key=idempotency_key,
        )
        return AddResult(items=items)

    owner = partial(key_owner, memory, body.user_id, body.agent_id)
    return idempotent(request, memory, idempotency_key, owner, body, 201, run)


@router.post("/search", response_model=SearchResult, summary="Search memories")
def search_memories(body: SearchBody, memory: Caller) -> SearchResult:
    """The `k` most relevant active memories, best first, with score and provenance."""
    hits = memory.search(
        body.query,
        user_id=body.user_id,
        agent_id=body.agent_id,
        session_id=body.session_id,
        k=body.k,
        filters=body.filters,
        types=body.types,
        since=body.since,
        until=body.until,
        pipeline=body.pipeline,
    )
    return SearchResult(hits=hits)


@router.post("/feedback", response_model=FeedbackResult, summary="Report feedback on an answer")
def give_feedback(
    request: Request, body: FeedbackBody, memory: Caller, idempotency_key: IdempotencyKey = None
) -> Any:
    """Which memories an answer to `query` cited or used, and which were wrong: recorded,
    and one step of the owner's online reranker. All ids must be the owner's, else 404 and
    nothing is recorded."""

    def run() -> FeedbackResult:
        return memory.feedback(
            body.query,
            cited=body.cited,
            used=body.used,
            wrong=body.wrong,
            user_id=body.user_id,
            agent_id=body.agent_id,
        )

    owner = partial(key_owner, memory, body.user_id, body.agent_id)
    return idempotent(request, memory, idempotency_key, owner, body, 200, run)


@router.get("/memories", response_model=Page, summary="List memories")
def list_memories(
    memory: Caller,
    user_id: UserQ = None,
    agent_id: AgentQ = None,
    session_id: Annotated[str | None, Query(description="Only this session.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    types: Annotated[list[str] | None, Query(alias="type", description="Only these types.")] = None,
    since: Annotated[IsoTime | None, Query(description="From this time on.")] = None,
    until: Annotated[IsoTime | None, Query(description="Up to this time.")] = None,
    include_archived: Annotated[bool, Query(description="Archived memories too.")] = False,
    filters: Annotated[
        str | None, Query(description='Metadata conditions as JSON, e.g. {"topic": "x"}.')
    ] = None,
) -> Page:
    """A page of the owner's memories in insertion order; pass `next_cursor` back."""
    return memory.get_all(
        user_id=user_id,
        agent_id=agent_id,
        session_id=session_id,
        limit=limit,
        cursor=cursor,
        types=types,
        since=since,
        until=until,
        include_archived=include_archived,
        filters=_filters(filters),
    )


@router.get("/memories/{memory_id}", response_model=MemoryItem, summary="Get a memory")
def get_memory(
    memory_id: MemoryId, memory: Caller, user_id: UserQ = None, agent_id: AgentQ = None
) -> MemoryItem:
    """One memory, archived ones too."""
    return memory.get(memory_id, user_id=user_id, agent_id=agent_id)


@router.patch("/memories/{memory_id}", response_model=MemoryItem, summary="Update a memory")
def update_memory(
    request: Request,
    memory_id: MemoryId,
    body: UpdateBody,
    memory: Caller,
    user_id: UserQ = None,
    agent_id: AgentQ = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """A new version with new text and/or metadata; the old one stays in the history."""

    def run() -> MemoryItem:
        return memory.update(
            memory_id,
            body.text,
            metadata=body.metadata,
            reason=body.reason,
            user_id=user_id,
            agent_id=agent_id,
        )

    owner = partial(key_owner, memory, user_id, agent_id, memory_id)
    return idempotent(request, memory, idempotency_key, owner, body, 200, run)


@router.delete("/memories/{memory_id}", response_model=DeleteResult, summary="Delete a memory")
def delete_memory(
    request: Request,
    memory_id: MemoryId,
    memory: Caller,
    hard: Annotated[bool, Query(description="Erase for good (GDPR) instead of archiving.")] = False,
    reason: Annotated[str | None, Query(description="Why (kept in history).")] = None,
    user_id: UserQ = None,
    agent_id: AgentQ = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Archive (hidden from search, restorable); `?hard=true` erases it and its history."""

    def run() -> DeleteResult:
        memory.delete(memory_id, hard=hard, reason=reason, user_id=user_id, agent_id=agent_id)
        return DeleteResult(id=memory_id, deleted="erased" if hard else "archived")

    owner = partial(key_owner, memory, user_id, agent_id, memory_id)
    return idempotent(request, memory, idempotency_key, owner, None, 200, run)


@router.post("/memories/{memory_id}/restore", response_model=MemoryItem, summary="Restore a memory")
def restore_memory(
    request: Request,
    memory_id: MemoryId,
    memory: Caller,
    body: RestoreBody | None = None,
    user_id: UserQ = None,
    agent_id: AgentQ = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Bring an archived memory back (a 'restore' version is recorded)."""
    reason = body.reason if body is not None else None

    def run() -> MemoryItem:
        return memory.restore(memory_id, reason=reason, user_id=user_id, agent_id=agent_id)

    owner = partial(key_owner, memory, user_id, agent_id, memory_id)
    return idempotent(request, memory, idempotency_key, owner, body, 200, run)


@router.get("/memories/{memory_id}/history", response_model=HistoryResult, summary="Memory history")
def memory_history(
    memory_id: MemoryId, memory: Caller, user_id: UserQ = None, agent_id: AgentQ = None
) -> HistoryResult:
    """Every version, oldest first: text, event, reason, time."""
    return HistoryResult(versions=memory.history(memory_id, user_id=user_id, agent_id=agent_id))


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
