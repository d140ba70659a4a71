"""Validation of owner scopes, ids, times and cursors at the public boundary (no I/O)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engram.errors import ValidationError
from engram.store.base import MemoryFilter
from engram.store.sql import iso
from engram.types import MemoryState, MemoryType

_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


def check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value) or not value.strip():
        raise ValidationError(
            f"{what} must be a non-empty string of at most 128 printable characters"
        )
    check_utf8(value, what)
    return value


def check_utf8(value: Any, what: str) -> None:
    """Strings anywhere in `value` must encode as UTF-8 (no lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValidationError(f"{what} is not valid UTF-8: {err.reason}") from err
    elif isinstance(value, dict):
        for key, item in value.items():
            check_utf8(key, what)
            check_utf8(item, what)
    elif isinstance(value, list | tuple):
        for item in value:
            check_utf8(item, what)


@dataclass(frozen=True)
class Scope:
    """Whose memories: the owner picks the MemCube; agent/session narrow inside it."""

    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None

    @classmethod
    def of(
        cls,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        required: bool = True,
    ) -> Scope:
        scope = cls(
            user_id=None if user_id is None else check_id(user_id, "user_id"),
            agent_id=None if agent_id is None else check_id(agent_id, "agent_id"),
            session_id=None if session_id is None else check_id(session_id, "session_id"),
        )
        if required and scope.owner is None:
            raise ValidationError("give user_id or agent_id: every memory belongs to an owner")
        return scope

    @property
    def owner(self) -> str | None:
        """Cube owner: the user when given, else the agent."""
        if self.user_id is not None:
            return f"user:{self.user_id}"
        if self.agent_id is not None:
            return f"agent:{self.agent_id}"
        return None

    @property
    def agent_filter(self) -> str | None:
        """With a user owner, an agent_id narrows to that agent's memories of the user."""
        return self.agent_id if self.user_id is not None else None


def parse_time(value: Any, what: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError as err:
            raise ValidationError(f"{what} {value!r} is not an ISO-8601 date-time") from err
    raise ValidationError(f"{what} must be an ISO-8601 string or a datetime")


def parse_types(
    types: Iterable[str | MemoryType] | str | MemoryType | None,
) -> tuple[MemoryType, ...]:
    if types is None:
        return ()
    if isinstance(types, str | MemoryType):
        types = [types]
    return tuple(parse_memory_type(t) for t in types)


def parse_memory_type(value: str | MemoryType) -> MemoryType:
    try:
        return MemoryType(value)
    except ValueError as err:
        known = ", ".join(t.value for t in MemoryType)
        raise ValidationError(f"unknown memory type {value!r}; use one of {known}") from err


def build_filter(
    scope: Scope,
    *,
    types: Iterable[str | MemoryType] | str | MemoryType | None = None,
    since: Any = None,
    until: Any = None,
    filters: dict[str, Any] | None = None,
    include_archived: bool = False,
) -> MemoryFilter:
    if filters is not None and not isinstance(filters, dict):
        raise ValidationError("filters must be a dict of metadata conditions")
    check_utf8(filters, "filters")
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if start and end and _naive(start) > _naive(end):
        raise ValidationError("since is later than until")
    states = (
        (MemoryState.ACTIVE, MemoryState.ARCHIVED) if include_archived else (MemoryState.ACTIVE,)
    )
    return MemoryFilter(
        types=parse_types(types),
        states=states,
        session_id=scope.session_id,
        agent_id=scope.agent_filter,
        since=start,
        until=end,
        metadata=dict(filters or {}),
    )


def _naive(value: datetime) -> datetime:
    return datetime.fromisoformat(iso(value))


def encode_cursor(key: int | None) -> str | None:
    if key is None:
        return None
    return base64.urlsafe_b64encode(f"k{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise ValidationError("cursor must be a string from a previous page's next_cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("k"):
            raise ValueError(raw)
        return int(raw[1:])
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise ValidationError(f"cursor {cursor!r} is not one Engram issued") from err
