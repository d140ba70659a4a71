"""Generic JSON-lines chats. Each line is one of:

- a batch: {"messages": [{"role", "content", "name"?, "timestamp"?, "source_id"?}, ...],
  "user_id"?, "agent_id"?, "session_id"?, "metadata"?, "timestamp"?, "type"?}
- one message: {"role"?, "content", "name"?, "timestamp"?, "source_id"?, "user_id"?, ...}
- an item written by `engram export` ({"id", "memory", "provenance", "type", "state",
  "metadata", ...}), so an export can be imported elsewhere, or again: its `id` stands in
  for a missing `source_id` (re-imports skip it), and an archived item stays archived.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram.errors import ValidationError
from engram.memory import AddRequest

_MESSAGE_KEYS = ("role", "content", "name", "timestamp", "source_id")
_STATES = ("active", "archived")


@dataclass(frozen=True)
class PlannedAdd:
    """One add of an import: the request, where in the file it comes from (for error
    messages), and whether it is an exported memory that was archived."""

    where: str
    request: AddRequest
    archived: bool = False


def _from_export(obj: dict[str, Any]) -> tuple[AddRequest, bool]:
    prov = obj["provenance"]
    if not isinstance(prov, dict):
        raise ValidationError("an exported memory's 'provenance' must be an object")
    state = obj.get("state", "active")
    if state not in _STATES:
        raise ValidationError(f"an exported memory's 'state' must be active or archived: {state!r}")
    message = {
        "role": prov.get("role") or "user",
        "content": obj["memory"],
        "name": prov.get("name"),
        "timestamp": prov.get("timestamp"),
        "source_id": prov.get("source_id") or obj.get("id"),
    }
    request = AddRequest(
        messages=[message],
        user_id=prov.get("user_id"),
        agent_id=prov.get("agent_id"),
        session_id=prov.get("session_id"),
        metadata=obj.get("metadata"),
        memory_type=obj.get("type", "turn"),
        source=prov.get("source") or "import:jsonl",
    )
    return request, state == "archived"


def _request(obj: Any, user_id: str | None) -> tuple[AddRequest, bool]:
    if not isinstance(obj, dict):
        raise ValidationError("each line must be a JSON object")
    if "memory" in obj and "provenance" in obj:
        return _from_export(obj)
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list):
            raise ValidationError(
                "'messages' must be a list of messages; for one message give 'content'"
            )
    elif "content" in obj:
        messages = [{k: obj[k] for k in _MESSAGE_KEYS if k in obj}]
    else:
        raise ValidationError("a line needs 'messages', 'content', or an exported 'memory'")
    request = AddRequest(
        messages=messages,
        user_id=obj.get("user_id", user_id if "agent_id" not in obj else None),
        agent_id=obj.get("agent_id"),
        session_id=obj.get("session_id"),
        metadata=obj.get("metadata"),
        timestamp=obj.get("timestamp") if "messages" in obj else None,
        memory_type=obj.get("type", "turn"),
        source="import:jsonl",
    )
    return request, False


def read_jsonl(path: Path | str, user_id: str | None = None) -> Iterator[PlannedAdd]:
    """One planned add per non-blank line; a ValidationError names `file:line`."""
    try:
        fh = Path(path).open(encoding="utf-8")
    except OSError as err:
        raise ValidationError(f"cannot open {path}: {err}") from err
    with fh:
        try:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    request, archived = _request(json.loads(line), user_id)
                except (ValueError, RecursionError, KeyError) as err:
                    # ValueError: bad JSON or an integer beyond Python's digit limit
                    problem = "nested too deeply" if isinstance(err, RecursionError) else err
                    raise ValidationError(f"{where}: {problem}") from err
                yield PlannedAdd(where, request, archived)
        except UnicodeDecodeError as err:
            raise ValidationError(f"{path} is not valid UTF-8: {err}") from err
