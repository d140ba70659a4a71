"""Request and response shapes of the REST API (OpenAPI at /openapi.json). The request
bodies of the memory verbs are built from the operation table (engram.ops) by rest_ops.

Bodies only describe shapes; values (lengths, k, filters, times, owners) are checked by
`Memory`, the one place that validates input, so REST, MCP and Python agree exactly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from engram.answer.result import AnswerResult
from engram.ops import Operation
from engram.types import (
    DeleteResult,
    FeedbackResult,
    MemoryItem,
    Mount,
    Page,
    SearchHit,
    Version,
)

# Times stay strings until Memory parses them (ISO-8601; naive means UTC): no silent
# reading of numbers as Unix times.
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Body(BaseModel):
    """Strict: unknown fields and wrong JSON types are refused, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class MessageIn(Body):
    """One chat message."""

    role: str = Field(default="user", description="user, assistant, system, tool ...")
    content: str = Field(description="The message text.")
    name: str | None = Field(default=None, description="Speaker name.")
    timestamp: IsoTime | None = Field(default=None, description="When it was said.")
    source_id: str | None = Field(default=None, description="Your id for this turn.")


class AddResult(BaseModel):
    items: list[MemoryItem]


class SearchResult(BaseModel):
    hits: list[SearchHit]


class HistoryResult(BaseModel):
    versions: list[Version]


class Held(BaseModel):
    """A tier holding a memory."""

    model_config = ConfigDict(from_attributes=True)

    tier: str = Field(description="text, activation (a KV block) or parametric (an adapter).")
    key: str = Field(description="The artifact: the memory id, a block key, an adapter version.")
    memory_version: int = Field(description="The memory version it was built from.")
    current: bool = Field(description="Built from the memory's present version.")


class TiersResult(BaseModel):
    tiers: list[Held]


class MountsResult(BaseModel):
    mounts: list[Mount]


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


RESULTS: dict[str, type[BaseModel]] = {
    "add": AddResult,
    "search": SearchResult,
    "feedback": FeedbackResult,
    "list": Page,
    "get": MemoryItem,
    "update": MemoryItem,
    "delete": DeleteResult,
    "restore": MemoryItem,
    "history": HistoryResult,
    "tiers": TiersResult,
    "answer": AnswerResult,
    "mount": Mount,
    "unmount": Mount,
    "mounts": MountsResult,
}


def result_of(op: Operation, value: Any) -> BaseModel:
    """What `op` answers on REST and MCP: the method's result, in its envelope if any."""
    if op.envelope is None:
        return cast(BaseModel, value)
    return RESULTS[op.name].model_validate({op.envelope: value})
