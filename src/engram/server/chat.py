"""OpenAI-compatible chat with memory: `POST /v1/chat/completions` and `GET /v1/models`.

The key decides the owner (an admin key, or `--no-auth`, names it in `X-Engram-User`). The
owner's memories relevant to the last user message go into the request as a system
message, the local model (or the `llm` section's endpoint) answers, and the last user
message and the reply are stored as the owner's memories unless `X-Engram-Store: false`.
Errors keep Engram's `{"error": {...}}` shape, which the `openai` client raises as
`APIStatusError` subclasses with `.body` the inner object. See docs/server.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engram.answer.api import MAX_TOKENS
from engram.errors import EngramError, ValidationError
from engram.llm.base import ChatMessage
from engram.memory import Memory
from engram.scope import OwnerKwargs, Scope
from engram.server.access import ForbiddenError, Principal
from engram.server.auth import principal, server_state
from engram.server.chat_stream import (
    CHUNK,
    ENGRAM_MODEL,
    ChatJob,
    Reply,
    UpstreamError,
    open_reply,
    served_model,
)
from engram.server.errors import ERROR_RESPONSES, ApiError, ErrorBody, status_of
from engram.server.routes import known_query
from engram.store.keys import KeyScope
from engram.text.ingest import check_text
from engram.types import SearchHit

log = logging.getLogger("engram.server")

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorBody, "description": "Unknown model, or an owner this key may not use."},
    502: {"model": ErrorBody, "description": "The upstream chat endpoint failed."},
}
chat = APIRouter(prefix="/v1", responses=_RESPONSES, dependencies=[Depends(known_query)])

_YES, _NO = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """A message: text content (a string, or text parts). Other OpenAI message fields
    (tool_calls, refusal ...) are accepted only when empty: the endpoint chats in text."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ChatMessageIn:
        for key, value in (self.model_extra or {}).items():
            if value not in (None, [], {}, ""):
                raise ValueError(f"{key!r} is not supported: messages carry text only")
        return self

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(BaseModel):
    """An OpenAI chat completion request. Parameters not named here are relayed to an
    upstream endpoint; the local model accepts sampling settings and refuses the rest."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The served model (GET /v1/models) or 'engram'.")
    messages: list[ChatMessageIn] = Field(
        description="The conversation; the last message is the user's (chat.max_messages)."
    )
    stream: bool = Field(default=False, description="Server-sent events ending data: [DONE].")
    max_tokens: int | None = Field(default=None, description="Longest reply, in tokens.")
    max_completion_tokens: int | None = Field(default=None, description="As max_tokens.")
    stream_options: dict[str, Any] | None = Field(
        default=None, description='{"include_usage": true}: a last chunk with usage.'
    )
    metadata: dict[str, str] | None = Field(
        default=None, description="Metadata of the stored turns."
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "engram"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _served(memory: Memory) -> list[str]:
    served = served_model(memory.config)
    return [served] if served == ENGRAM_MODEL else [served, ENGRAM_MODEL]


@chat.get("/models", response_model=ModelList, summary="Models the chat endpoint answers with")
def list_models(request: Request, caller: Annotated[Principal, Depends(principal)]) -> ModelList:
    """The configured model (answer.model, or llm.model with answer.provider = 'llm') and
    the alias 'engram', in OpenAI's list shape."""
    caller.require(KeyScope.READ)
    return ModelList(data=[ModelCard(id=m) for m in _served(server_state(request).memory)])


def _store_flag(header: str | None, default: bool) -> bool:
    if header is None:
        return default
    value = header.strip().lower()
    if value not in _YES | _NO:
        raise ValidationError(f"X-Engram-Store must be true or false, got {header!r}")
    return value in _YES


def _owner(caller: Principal, user: str | None) -> OwnerKwargs:
    owner = caller.owner_kwargs(user, None)
    if owner["user_id"] is None and owner["agent_id"] is None:
        raise ValidationError(
            "this key has no owner of its own: name the user in the X-Engram-User header"
        )
    Scope.of(**owner)  # ids checked as every verb checks them
    return owner


def _conversation(body: ChatRequest, memory: Memory) -> list[ChatMessage]:
    limit = memory.config.chat.max_messages
    if not body.messages:
        raise ValidationError("messages is empty: send at least one user message")
    if len(body.messages) > limit:
        raise ValidationError(
            f"{len(body.messages)} messages; the limit is {limit} (chat.max_messages)"
        )
    if body.messages[-1].role != "user":
        raise ValidationError(
            f"the last message must be the user's (role 'user'), got {body.messages[-1].role!r}"
        )
    chars = memory.config.limits.max_text_chars
    return [
        {"role": m.role, "content": check_text(m.text, chars, f"messages[{i}].content")}
        for i, m in enumerate(body.messages)
    ]


def _max_tokens(body: ChatRequest, default: int) -> tuple[int, str]:
    for name in ("max_completion_tokens", "max_tokens"):
        value = getattr(body, name)
        if value is not None:
            if not 1 <= value <= MAX_TOKENS:
                raise ValidationError(f"{name} must be an integer from 1 to {MAX_TOKENS}")
            return value, name
    return default, "max_tokens"


def _check_model(body: ChatRequest, memory: Memory) -> None:
    served = _served(memory)
    if body.model not in served:
        known = " or ".join(repr(m) for m in served)
        raise ApiError(
            404,
            "model_not_found",
            f"model {body.model!r} is not served here; ask for {known} (GET /v1/models)",
        )


def _hits(memory: Memory, owner: OwnerKwargs, question: str) -> list[SearchHit]:
    """The owner's memories relevant to the last user message (its end, when it is
    longer than a query may be), less the same message stored by an earlier turn."""
    query = question[-memory.config.limits.max_query_chars :]
    hits = memory.search(query, k=memory.config.answer.k, **owner)
    return [h for h in hits if h.memory.strip() != question.strip()]  # not its own echo


def _extension(owner: OwnerKwargs, used: list[SearchHit], stored: list[str]) -> dict[str, Any]:
    memories = [{"id": h.id, "memory": h.memory, "score": h.score} for h in used]
    return {"owner": str(Scope.of(**owner).owner), "memories": memories, "stored": stored}


class _Turns:
    """Stores the last user message and the reply as the owner's memories."""

    def __init__(self, memory: Memory, owner: OwnerKwargs, question: str, body: ChatRequest):
        self.memory, self.owner, self.question = memory, owner, question
        self.metadata = body.metadata

    def store(self, reply: str) -> list[str]:
        messages = [{"role": "user", "content": self.question}]
        if reply.strip():
            messages.append({"role": "assistant", "content": reply})
        items = self.memory.add(messages, metadata=self.metadata, source="chat", **self.owner)
        return [item.id for item in items]


@chat.post(
    "/chat/completions",
    summary="OpenAI-compatible chat answered with the owner's memories",
    responses={
        200: {
            "description": "A chat.completion, or with stream: true server-sent "
            "chat.completion.chunk events ending data: [DONE]; both carry an `engram` "
            "object (memories used, turns stored).",
            "content": {"application/json": {}, "text/event-stream": {}},
        }
    },
)
def chat_completions(
    body: ChatRequest,
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    x_engram_user: Annotated[
        str | None, Header(description="The owner's user id (admin keys, --no-auth).")
    ] = None,
    x_engram_store: Annotated[
        str | None, Header(description="false: do not store this turn (default chat.store).")
    ] = None,
) -> Response:
    """Retrieve the owner's memories for the last user message, answer with them in a
    system message, store the new turns. Read scope; storing needs write."""
    memory = server_state(request).memory
    caller.require(KeyScope.READ)
    _check_model(body, memory)
    conversation = _conversation(body, memory)
    max_tokens, max_field = _max_tokens(body, memory.config.chat.max_tokens)
    store = _store_flag(x_engram_store, memory.config.chat.store)
    owner = _owner(caller, x_engram_user)
    if store and not caller.scope.allows(KeyScope.WRITE):
        raise ForbiddenError(
            f"this key's scope is {caller.scope.value!r}: storing the turn needs 'write'; "
            "send X-Engram-Store: false to chat without storing"
        )
    question = conversation[-1]["content"]
    extra = dict(body.model_extra or {})
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    job = ChatJob(
        conversation,
        _hits(memory, owner, question),
        max_tokens,
        max_field,
        body.stream,
        include_usage,
        extra,
    )
    try:
        reply = open_reply(memory, job)
    except UpstreamError as err:
        raise ApiError(502, err.code, str(err)) from err
    turns = _Turns(memory, owner, question, body) if store else None
    headers = {"X-Engram-Memories": ",".join(h.id for h in reply.used)}
    if body.stream:
        events = _events(reply, owner, turns)
        headers["Cache-Control"] = "no-cache"
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    try:
        completion = reply.completion()
    except UpstreamError as err:
        raise ApiError(502, err.code, str(err)) from err
    finally:
        reply.close()
    stored = turns.store(_reply_text(completion)) if turns else []
    completion["engram"] = _extension(owner, reply.used, stored)
    return JSONResponse(completion, headers=headers)


def _reply_text(completion: dict[str, Any]) -> str:
    message = completion["choices"][0].get("message") or {}
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _delta_text(chunk: dict[str, Any]) -> Iterator[str]:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str):
            yield content


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _events(reply: Reply, owner: OwnerKwargs, turns: _Turns | None) -> Iterator[str]:
    """The reply's chunks as server-sent events, then a chunk with no choices holding the
    `engram` object, then [DONE]. A failure mid-stream is an `error` event (the openai
    client raises it); a stream the client leaves stores nothing."""
    text: list[str] = []
    last: dict[str, Any] = {}
    try:
        for chunk in reply.chunks():
            text.extend(_delta_text(chunk))
            last = chunk
            yield _sse(chunk)
        stored = turns.store("".join(text).strip()) if turns else []
        tail = {
            "id": last.get("id", ""),
            "object": CHUNK,
            "created": last.get("created", int(time.time())),
            "model": last.get("model", reply.model),
            "choices": [],
            "engram": _extension(owner, reply.used, stored),
        }
        yield _sse(tail)
        yield "data: [DONE]\n\n"
    except EngramError as err:
        status = 502 if isinstance(err, UpstreamError) else status_of(err)
        if status >= 500:
            log.error("chat stream failed: %s", err)
        yield _sse({"error": {"code": err.code, "message": str(err), "details": None}})
    except Exception:  # the response has started: report it in the stream, and log it
        log.exception("chat stream failed")
        yield _sse({"error": {"code": "internal_error", "message": "internal server error"}})
    finally:
        reply.close()
