"""Validation of owner scopes, ids, times and cursors at the public boundary (no I/O)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from engram.errors import ValidationError
from engram.store.base import FILTER_OPERATORS, MemoryFilter
from engram.timeutil import iso, parse_time
from engram.types import MEMORY_TYPES, MemoryState, MemoryType

_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SCALARS = (str, int, float, bool, type(None))
_MAX_KEY = 2**63 - 1
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_NESTING = 32  # metadata / filter containers; json and SQLite recurse per level


def check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value) or not value.strip():
        raise ValidationError(
            f"{what} must be a non-empty string of at most 128 printable characters"
        )
    check_utf8(value, what)
    return value


def check_utf8(value: str, what: str) -> None:
    """A string must encode as UTF-8 (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValidationError(f"{what} is not valid UTF-8: {err.reason}") from err


def check_json_value(value: Any, what: str) -> None:
    """Metadata and filter values: strings valid UTF-8, integers within SQLite's signed
    64 bits, containers nested at most MAX_NESTING deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_utf8(item, what)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -_MAX_KEY - 1 <= item <= _MAX_KEY:
                raise ValidationError(f"{what} holds an integer outside the signed 64-bit range")
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_NESTING:
                raise ValidationError(f"{what} is nested more than {MAX_NESTING} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def check_flag(value: Any, what: str) -> bool:
    """A real bool: `hard="false"` must not erase anything."""
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be True or False, got {value!r}")
    return value


class OwnerKwargs(TypedDict, total=False):
    """An owner as keyword arguments of `Scope.of` and the `Memory` verbs."""

    user_id: str | None
    agent_id: str | None


def owner_args(owner: str) -> OwnerKwargs:
    """`Scope.owner_kwargs` typed for `**` into `Scope.of` and the `Memory` verbs."""
    kind, _, name = owner.partition(":")
    return {"user_id": name} if kind == "user" else {"agent_id": name}


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

    @staticmethod
    def parse(value: object, what: str = "owner", *, bare_user: bool = False) -> str:
        """An owner as every surface names one, 'user:alice' or 'agent:bot', its id checked
        as user and agent ids are. `bare_user`: a name without a known kind ('alice',
        'team:x') is a user id, as `engram keys create --owner` reads it."""
        if isinstance(value, str):
            kind, sep, name = value.partition(":")
            if not sep or kind not in ("user", "agent"):
                if not bare_user:
                    raise ValidationError(
                        f"{what} must name an owner as user:NAME or agent:NAME, got {value!r}"
                    )
                kind, name = "user", value
            return f"{kind}:{check_id(name, what)}"
        shape = "alice, user:alice or agent:bot" if bare_user else "user:NAME or agent:NAME"
        raise ValidationError(f"{what} must be a string such as {shape}, got {value!r}")

    @staticmethod
    def owner_kwargs(owner: str) -> dict[str, str]:
        """'user:alice' -> {'user_id': 'alice'}; 'agent:bot' -> {'agent_id': 'bot'}."""
        kind, _, name = owner.partition(":")
        return {"user_id": name} if kind == "user" else {"agent_id": name}

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


def parse_types(
    types: Iterable[str | MemoryType] | str | MemoryType | None,
) -> tuple[str, ...]:
    if types is None:
        return ()
    if isinstance(types, str | MemoryType):
        types = [types]
    if not isinstance(types, Iterable):
        raise ValidationError(f"types must be a memory type or a list of them, got {types!r}")
    return tuple(parse_memory_type(t) for t in types)


def parse_memory_type(value: str | MemoryType) -> str:
    if not isinstance(value, str) or value not in MEMORY_TYPES:
        known = ", ".join(MEMORY_TYPES)
        raise ValidationError(f"unknown memory type {value!r}; use one of {known}")
    return str(value)


def build_filter(
    scope: Scope,
    *,
    types: Iterable[str | MemoryType] | str | MemoryType | None = None,
    since: Any = None,
    until: Any = None,
    filters: dict[str, Any] | None = None,
    include_archived: bool = False,
) -> MemoryFilter:
    check_flag(include_archived, "include_archived")
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
        metadata=check_filters(filters),
    )


def check_filters(filters: Any) -> dict[str, dict[str, Any]]:
    """Validate metadata conditions and normalise `{k: v}` to `{k: {"$eq": v}}`."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError("filters must be a dict of metadata conditions")
    check_json_value(filters, "filters")
    known = ", ".join(FILTER_OPERATORS)
    out: dict[str, dict[str, Any]] = {}
    for key, condition in filters.items():
        if not isinstance(key, str) or not _METADATA_KEY.match(key):
            raise ValidationError(
                f"metadata filter key {key!r} must be 1-128 letters, digits, '_', '.' or '-'"
            )
        if not isinstance(condition, dict):
            condition = {"$eq": condition}
        if not condition:
            raise ValidationError(f"metadata filter {key!r} has no operator; use one of {known}")
        for op, value in condition.items():
            if op not in FILTER_OPERATORS:
                raise ValidationError(
                    f"unknown metadata filter operator {op!r}; use one of {known}"
                )
            if op == "$in":
                if not isinstance(value, list | tuple) or not value:
                    raise ValidationError(f"metadata filter {key}.$in needs a non-empty list")
                if len(value) > 1000 or not all(isinstance(v, _SCALARS) for v in value):
                    raise ValidationError(
                        f"metadata filter {key}.$in values must be scalars, at most 1000"
                    )
            elif not isinstance(value, _SCALARS):
                raise ValidationError(f"metadata filter {key}.{op} value must be a scalar")
        out[key] = dict(condition)
    return out


def _naive(value: datetime) -> datetime:
    return datetime.fromisoformat(iso(value))


CURSOR_PREFIX = "c1"  # version of the cursor format below
_NONCE, _BODY, _TAG = 12, 20, 16  # nonce, nonce + sealed key, truncated HMAC-SHA256


class CursorCodec:
    """Opaque, owner-bound page cursors sealed with a per-store secret.

    Stdlib-only authenticated encryption (encrypt-then-MAC): the row key is XORed with
    HMAC-SHA256(enc_key, random nonce), then HMAC-SHA256(mac_key, version, nonce,
    ciphertext, owner) is appended. A cursor thus reveals nothing about the store-wide
    insertion counter, and one replayed by another owner or altered is refused."""

    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("a cursor secret needs at least 16 bytes")
        self._enc = _prf(secret, b"engram/cursor/enc")
        self._mac = _prf(secret, b"engram/cursor/mac")

    def encode(self, key: int | None, owner: str) -> str | None:
        if key is None:
            return None
        if not 0 <= key <= _MAX_KEY:
            raise ValueError(f"row key {key} outside the signed 64-bit range")
        nonce = secrets.token_bytes(_NONCE)
        body = nonce + _xor(key.to_bytes(8, "big"), _prf(self._enc, nonce)[:8])
        sealed = body + self._tag(body, owner)
        return CURSOR_PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def decode(self, cursor: Any, owner: str) -> int | None:
        """The row key sealed in `cursor` for `owner`; ValidationError if it is not one
        this store issued to this owner (garbage, altered, or another owner's)."""
        if cursor is None:
            return None
        if not isinstance(cursor, str):
            raise ValidationError("cursor must be a string from a previous page's next_cursor")
        sealed = _unpack(cursor)
        if sealed is None or not hmac.compare_digest(
            sealed[_BODY:], self._tag(sealed[:_BODY], owner)
        ):
            shown = cursor if len(cursor) <= 64 else cursor[:64] + "..."
            raise ValidationError(f"cursor {shown!r} is not one Engram issued for this owner")
        nonce, ciphertext = sealed[:_NONCE], sealed[_NONCE:_BODY]
        return int.from_bytes(_xor(ciphertext, _prf(self._enc, nonce)[:8]), "big")

    def _tag(self, body: bytes, owner: str) -> bytes:
        return _prf(self._mac, CURSOR_PREFIX.encode() + body + owner.encode("utf-8"))[:_TAG]


def _unpack(cursor: str) -> bytes | None:
    """The sealed bytes of a well-formed cursor, else None."""
    text = cursor.removeprefix(CURSOR_PREFIX)
    if text == cursor or not _B64URL.fullmatch(text):
        return None
    try:
        sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return sealed if len(sealed) == _BODY + _TAG else None


def _prf(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))
