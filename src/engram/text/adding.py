"""One add request, validated into the rows it will write (`Memory.add`, `add_batch`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engram.config import LimitsConfig
from engram.errors import InvalidRequestError, ValidationError
from engram.lifecycle import Lifecycle
from engram.lifecycle.core import check_expiry
from engram.scope import Scope, check_id, parse_memory_type, parse_time
from engram.store.base import NewMemory
from engram.text.ingest import MessagesInput, check_metadata, keyed_rows, new_rows, to_messages
from engram.types import MemoryType


@dataclass(frozen=True)
class AddRequest:
    """The arguments of one `Memory.add`, for `Memory.add_batch`."""

    messages: MessagesInput
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] | None = None
    timestamp: datetime | str | None = None
    memory_type: MemoryType | str = MemoryType.TURN
    source: str = "api"
    ttl: timedelta | float | None = None  # archived by gc this long after the add
    expires_at: datetime | str | None = None  # ... or at this time (not both)
    idempotency_key: str | None = None  # a retried add returns what the first one stored


def plan_at(
    i: int, req: Any, total: int, limits: LimitsConfig, lifecycle: Lifecycle
) -> tuple[Scope, list[NewMemory]]:
    """Validate request `i`; a ValidationError says which request (`.index`)."""
    try:
        if not isinstance(req, AddRequest):
            raise ValidationError(f"must be an AddRequest, got {type(req).__name__}")
        return _plan(req, limits, lifecycle)
    except ValidationError as err:
        raise InvalidRequestError(i, str(err), numbered=total > 1) from err


def _plan(
    req: AddRequest, limits: LimitsConfig, lifecycle: Lifecycle
) -> tuple[Scope, list[NewMemory]]:
    scope = Scope.of(req.user_id, req.agent_id, req.session_id)
    rows = new_rows(
        to_messages(req.messages, limits),
        mtype=parse_memory_type(req.memory_type),
        metadata=check_metadata(req.metadata, limits),
        user_id=scope.user_id,
        agent_id=scope.agent_id,
        session_id=scope.session_id,
        timestamp=parse_time(req.timestamp, "timestamp"),
        source=check_id(req.source, "source"),
    )
    if req.idempotency_key is not None:
        rows = keyed_rows(rows, check_id(req.idempotency_key, "idempotency_key"))
    expiry = check_expiry(req.ttl, parse_time(req.expires_at, "expires_at"), datetime.now(UTC))
    return scope, lifecycle.new_rows(rows, expiry)
