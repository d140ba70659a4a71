"""Turn what callers hand to `add` into validated messages and new memory rows (no I/O)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from engram.config import LimitsConfig
from engram.errors import ValidationError
from engram.scope import check_id, check_json_value, parse_time
from engram.store.base import NewMemory
from engram.types import Message

MessagesInput = (
    str | bytes | Mapping[str, Any] | Message | Sequence[str | Mapping[str, Any] | Message]
)


def check_text(text: Any, limit: int, what: str = "memory text") -> str:
    """A non-empty, valid UTF-8 string of at most `limit` characters, or a ValidationError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValidationError(f"{what} is not valid UTF-8: {err}") from err
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValidationError(f"{what} is not valid UTF-8 (lone surrogate): {err}") from err
    if "\x00" in text:
        raise ValidationError(f"{what} contains a NUL character")
    if not text.strip():
        raise ValidationError(f"{what} is empty")
    if len(text) > limit:
        raise ValidationError(f"{what} has {len(text):,} characters; the limit is {limit:,}")
    return text


def check_metadata(metadata: Any, limits: LimitsConfig) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    if not all(isinstance(k, str) for k in metadata):
        raise ValidationError("metadata keys must be strings")
    check_json_value(dict(metadata), "metadata")
    try:
        encoded = json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValidationError(f"metadata is not JSON-serialisable: {err}") from err
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError as err:
        raise ValidationError(f"metadata is not valid UTF-8 (lone surrogate): {err}") from err
    if size > limits.max_metadata_bytes:
        limit = limits.max_metadata_bytes
        raise ValidationError(f"metadata is {size:,} bytes as JSON; the limit is {limit:,}")
    return json.loads(encoded)


def to_messages(messages: MessagesInput, limits: LimitsConfig) -> list[Message]:
    """Accept a string, one message (dict or Message) or a list of them."""
    if isinstance(messages, str | bytes | Mapping | Message):
        raw: list[Any] = [messages]
    elif isinstance(messages, Sequence):
        raw = list(messages)
    else:
        raise ValidationError(
            f"messages must be a string, a message dict or a list of them, "
            f"got {type(messages).__name__}"
        )
    if not raw:
        raise ValidationError("messages is an empty list")
    if len(raw) > limits.max_batch:
        raise ValidationError(
            f"{len(raw):,} messages in one add; the limit is {limits.max_batch:,}"
        )
    out: list[Message] = []
    for i, item in enumerate(raw):
        where = f"message {i}" if len(raw) > 1 else "message"
        if isinstance(item, str | bytes):
            item = {"role": "user", "content": item}
        if isinstance(item, Mapping):
            content = item.get("content")
            if "content" not in item:
                raise ValidationError(f"{where} has no 'content'")
            content = check_text(content, limits.max_text_chars, f"{where} content")
            when = parse_time(item.get("timestamp"), f"{where} timestamp")
            item = {**item, "content": content, "timestamp": when}
            try:
                item = Message.model_validate(item)
            except PydanticValidationError as err:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()
                )
                raise ValidationError(f"{where} is invalid: {problems}") from err
        elif isinstance(item, Message):
            check_text(item.content, limits.max_text_chars, f"{where} content")
        else:
            raise ValidationError(f"{where} must be a string or a dict, got {type(item).__name__}")
        for attr in ("role", "name", "source_id"):
            value = getattr(item, attr)
            if value is not None:
                check_id(value, f"{where} {attr}")
        parse_time(item.timestamp, f"{where} timestamp")
        out.append(item)
    return out


def index_text(text: str, name: str | None) -> str:
    """What the retrievers see: the speaker's name belongs to what was said."""
    return f"{name}: {text}" if name else text


def new_rows(
    messages: list[Message],
    *,
    mtype: str,
    metadata: dict[str, Any],
    user_id: str | None,
    agent_id: str | None,
    session_id: str | None,
    timestamp: datetime | None,
    source: str,
) -> list[NewMemory]:
    """One memory per message, each with its provenance."""
    return [
        NewMemory(
            text=msg.content,
            index_text=index_text(msg.content, msg.name),
            type=mtype,
            metadata=metadata,
            user_id=user_id,
            agent_id=agent_id,
            session_id=session_id,
            source_id=msg.source_id,
            turn_index=i,
            role=msg.role,
            name=msg.name,
            occurred_at=msg.timestamp or timestamp,
            source=source,
        )
        for i, msg in enumerate(messages)
    ]


IDEMPOTENT_SOURCE_PREFIX = "idem-"


def keyed_rows(rows: list[NewMemory], idempotency_key: str) -> list[NewMemory]:
    """Rows of an add made under an idempotency key: each row without a caller-given
    `source_id` gets one derived from the key, its position and its content. A retried
    add (a client that lost the response, an add cut short between two chunks) then finds
    the rows the first attempt stored and returns them instead of storing them twice."""
    out = []
    for i, row in enumerate(rows):
        if row.source_id is not None:
            out.append(row)
            continue
        parts = (idempotency_key, str(i), row.role or "", row.name or "", row.text)
        digest = hashlib.blake2b(digest_size=16)
        for part in parts:
            raw = part.encode("utf-8")
            digest.update(len(raw).to_bytes(4, "big") + raw)
        out.append(replace(row, source_id=IDEMPOTENT_SOURCE_PREFIX + digest.hexdigest()))
    return out
