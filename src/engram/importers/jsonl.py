"""Generic JSON-lines chats. Each line is one of:

- a batch: {"messages": [{"role", "content", "name"?, "timestamp"?, "source_id"?}, ...],
  "user_id"?, "agent_id"?, "session_id"?, "metadata"?, "timestamp"?, "type"?}
- one message: {"role"?, "content", "name"?, "timestamp"?, "source_id"?, "user_id"?, ...}
- an item written by `engram export` ({"memory", "provenance", "type", "metadata", ...}),
  so an export can be imported elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engram.errors import ValidationError
from engram.memory import AddRequest

_MESSAGE_KEYS = ("role", "content", "name", "timestamp", "source_id")


def _from_export(obj: dict[str, Any]) -> AddRequest:
    prov = obj.get("provenance") or {}
    message = {
        "role": prov.get("role") or "user",
        "content": obj["memory"],
        "name": prov.get("name"),
        "timestamp": prov.get("timestamp"),
        "source_id": prov.get("source_id"),
    }
    return AddRequest(
        messages=[message],
        user_id=prov.get("user_id"),
        agent_id=prov.get("agent_id"),
        session_id=prov.get("session_id"),
        metadata=obj.get("metadata"),
        memory_type=obj.get("type", "turn"),
        source=prov.get("source") or "import:jsonl",
    )


def _request(obj: Any, user_id: str | None) -> AddRequest:
    if not isinstance(obj, dict):
        raise ValidationError("each line must be a JSON object")
    if "memory" in obj and "provenance" in obj:
        return _from_export(obj)
    if "messages" in obj:
        messages = obj["messages"]
    elif "content" in obj:
        messages = [{k: obj[k] for k in _MESSAGE_KEYS if k in obj}]
    else:
        raise ValidationError("a line needs 'messages', 'content', or an exported 'memory'")
    return AddRequest(
        messages=messages,
        user_id=obj.get("user_id", user_id if "agent_id" not in obj else None),
        agent_id=obj.get("agent_id"),
        session_id=obj.get("session_id"),
        metadata=obj.get("metadata"),
        timestamp=obj.get("timestamp") if "messages" in obj else None,
        memory_type=obj.get("type", "turn"),
        source="import:jsonl",
    )


def read_jsonl(path: Path | str, user_id: str | None = None) -> Iterator[tuple[int, AddRequest]]:
    """(line number, request) for every non-blank line; ValidationError names the line."""
    try:
        fh = Path(path).open(encoding="utf-8")
    except OSError as err:
        raise ValidationError(f"cannot open {path}: {err}") from err
    with fh:
        try:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, _request(json.loads(line), user_id)
                except (json.JSONDecodeError, ValidationError, KeyError) as err:
                    raise ValidationError(f"{path}:{number}: {err}") from err
        except UnicodeDecodeError as err:
            raise ValidationError(f"{path} is not valid UTF-8: {err}") from err
