"""Request and response bodies of the REST API (OpenAPI at /openapi.json).

Bodies only describe shapes; values (lengths, k, filters, times, owners) are checked by
`Memory`, the one place that validates input, so REST, MCP and Python agree exactly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from engram.types import MemoryItem, SearchHit, Version

# Times stay strings until Memory parses them (ISO-8601; naive means UTC): no silent
# reading of numbers as Unix times.
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]

OwnerField = Field(
    default=None,
    description="Owner: a user id. Keys bound to an owner may omit it (their owner is used).",
)
AgentField = Field(
    default=None,
    description="Owner when no user_id is given; with a user_id, narrows to this agent's "
    "memories of the user.",
)


class _Body(BaseModel):
    """Strict: unknown fields and wrong JSON types are refused, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class MessageIn(_Body):
    """One chat message."""

    role: str = Field(default="user", description="user, assistant, system, tool ...")
    content: str = Field(description="The message text.")
    name: str | None = Field(default=None, description="Speaker name.")
    timestamp: IsoTime | None = Field(default=None, description="When it was said.")
    source_id: str | None = Field(default=None, description="Your id for this turn.")


class AddBody(_Body):
    """Remember `text` (one user message) or `messages` (a conversation)."""

    text: str | None = Field(default=None, description="One message's text.")
    messages: list[MessageIn] | None = Field(
        default=None, min_length=1, description="A conversation, one memory per message."
    )
    user_id: str | None = OwnerField
    agent_id: str | None = AgentField
    session_id: str | None = Field(default=None, description="Session the messages belong to.")
    metadata: dict[str, Any] | None = Field(default=None, description="Your JSON metadata.")
    timestamp: IsoTime | None = Field(default=None, description="When it happened.")
    type: str = Field(default="turn", description="Memory type: turn, fact, preference ...")
    ttl: float | None = Field(
        default=None, description="Seconds until gc archives it (not with expires_at)."
    )
    expires_at: IsoTime | None = Field(
        default=None, description="When gc archives it (ISO-8601; not with ttl)."
    )

    @model_validator(mode="after")
    def _one_of(self) -> AddBody:
        if (self.text is None) == (self.messages is None):
            raise ValueError("give exactly one of text or messages")
        return self


class SearchBody(_Body):
    query: str = Field(description="What to look for.")
    user_id: str | None = OwnerField
    agent_id: str | None = AgentField
    session_id: str | None = Field(default=None, description="Only this session.")
    k: int | None = Field(default=None, description="How many hits (default search.default_k).")
    filters: dict[str, Any] | None = Field(
        default=None, description='Metadata conditions: {"topic": "travel", "n": {"$gte": 3}}.'
    )
    types: list[str] | None = Field(default=None, description="Only these memory types.")
    since: IsoTime | None = Field(default=None, description="Only memories from this time on.")
    until: IsoTime | None = Field(default=None, description="Only memories up to this time.")
    pipeline: str | None = Field(default=None, description="Registered retrieval pipeline.")


class FeedbackBody(_Body):
    """Which memories an answer to `query` cited or used, and which retrieved ones were wrong."""

    query: str = Field(description="The query (question) the answer was for.")
    cited: list[str] = Field(default_factory=list, description="Ids of memories the answer cited.")
    used: list[str] = Field(
        default_factory=list, description="Ids of memories the answer used without citing them."
    )
    wrong: list[str] = Field(
        default_factory=list, description="Ids of retrieved memories that were wrong or unhelpful."
    )
    user_id: str | None = OwnerField
    agent_id: str | None = AgentField


class UpdateBody(_Body):
    text: str | None = Field(default=None, description="New text (re-embedded).")
    metadata: dict[str, Any] | None = Field(default=None, description="New metadata.")
    reason: str | None = Field(default=None, description="Why (kept in history).")


class RestoreBody(_Body):
    reason: str | None = Field(default=None, description="Why (kept in history).")


class AddResult(BaseModel):
    items: list[MemoryItem]


class SearchResult(BaseModel):
    hits: list[SearchHit]


class HistoryResult(BaseModel):
    versions: list[Version]


class DeleteResult(BaseModel):
    id: str
    deleted: Literal["archived", "erased"]


class OwnerRef(BaseModel):
    owner: str = Field(description="'user:alice' or 'agent:bot'.")
    user_id: str | None = None
    agent_id: str | None = None


class OwnersResult(BaseModel):
    owners: list[OwnerRef]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    auth: bool = Field(description="False when the server runs with --no-auth.")
