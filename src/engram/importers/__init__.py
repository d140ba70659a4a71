"""Import conversations into a Memory: LoCoMo-format JSON and generic JSON lines.

Imports are idempotent: a message whose source id (an exported memory's own id when it
has none) is already stored for its owner is skipped, and the report counts only the
memories this import stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engram.errors import InvalidRequestError, ValidationError
from engram.importers.jsonl import PlannedAdd, read_jsonl
from engram.importers.locomo import Conversation, Session, looks_like_locomo, read_locomo
from engram.memory import AddRequest, Memory
from engram.scope import Scope
from engram.types import Message

Format = Literal["auto", "locomo", "jsonl"]


@dataclass(frozen=True)
class ImportReport:
    format: str
    owners: int
    requests: int
    rows: int  # messages in the file
    stored: int  # memories this import stored (not those already there)
    seconds: float
    skipped: int = 0  # rows - stored: source id already stored, or repeated in the file
    archived: int = 0  # stored, then archived as they were in the export

    @property
    def rows_per_s(self) -> float:
        """Newly stored rows per second (rows already stored cost no embedding)."""
        return self.stored / self.seconds if self.seconds else 0.0


def _locomo_sessions(conv: Conversation, user_prefix: str) -> list[tuple[Session, AddRequest]]:
    return [
        (
            session,
            AddRequest(
                messages=[
                    {"role": "user", "content": t.text, "name": t.speaker, "source_id": t.dia_id}
                    for t in session.turns
                ],
                user_id=f"{user_prefix}{conv.sample_id}",
                session_id=f"session_{session.index}",
                timestamp=session.date,
                metadata={"session_date": session.date_text} if session.date_text else None,
                source="import:locomo",
            ),
        )
        for session in conv.sessions
        if session.turns
    ]


def locomo_requests(conv: Conversation, user_prefix: str = "") -> list[AddRequest]:
    """One add per session: owner = the sample id, turns keep their dia_id and the date."""
    return [request for _, request in _locomo_sessions(conv, user_prefix)]


def plan_import(
    path: Path, fmt: Format = "auto", user_id: str | None = None, user_prefix: str = ""
) -> tuple[str, list[PlannedAdd]]:
    """Read and validate a whole file's shape before anything is written."""
    if not path.is_file():
        raise ValidationError(f"{path} is not a file")
    if fmt == "auto":
        fmt = "locomo" if looks_like_locomo(path) else "jsonl"
    if fmt == "locomo":
        prefix = user_prefix if user_id is None else f"{user_id}:"
        planned = [
            PlannedAdd(f"{path}: {conv.sample_id} session_{session.index}", request)
            for conv in read_locomo(path)
            for session, request in _locomo_sessions(conv, prefix)
        ]
    elif fmt == "jsonl":
        planned = list(read_jsonl(path, user_id))
    else:
        raise ValidationError(f"unknown import format {fmt!r}; use auto, locomo or jsonl")
    if not planned:
        raise ValidationError(f"{path} holds no messages")
    return fmt, planned


@dataclass
class _Triage:
    """Which planned adds still need writing, and what they will store."""

    fresh: list[PlannedAdd]
    owners: int
    new_rows: int


def _source_ids(request: AddRequest) -> list[str | None]:
    """The source id of each message of a request (None where it has none)."""
    messages: Any = request.messages
    if not isinstance(messages, list | tuple):
        messages = [messages]
    ids: list[str | None] = []
    for message in messages:
        sid = message.source_id if isinstance(message, Message) else None
        if isinstance(message, dict):
            sid = message.get("source_id")
        ids.append(sid if isinstance(sid, str) else None)
    return ids


def _triage(memory: Memory, planned: list[PlannedAdd]) -> _Triage:
    """Skip adds whose every message is already stored for its owner; count the rest."""
    by_owner: dict[str, tuple[Scope, list[tuple[int, PlannedAdd]]]] = {}
    for i, add in enumerate(planned):
        try:
            scope = Scope.of(add.request.user_id, add.request.agent_id)
        except ValidationError as err:
            raise ValidationError(f"{add.where}: {err}") from err
        by_owner.setdefault(str(scope.owner), (scope, []))[1].append((i, add))
    fresh: list[tuple[int, PlannedAdd]] = []
    new_rows = 0
    for scope, adds in by_owner.values():
        cube = memory.cube(scope)
        wanted = [sid for _, add in adds for sid in _source_ids(add.request) if sid is not None]
        known = cube.known_sources(wanted) if cube is not None and wanted else set()
        for i, add in adds:
            ids = _source_ids(add.request)
            if ids and all(sid is not None and sid in known for sid in ids):
                continue
            fresh.append((i, add))
            for sid in ids:
                if sid is None or sid not in known:
                    new_rows += 1
                    if sid is not None:
                        known.add(sid)  # a source id repeated in the file is stored once
    return _Triage([add for _, add in sorted(fresh, key=lambda x: x[0])], len(by_owner), new_rows)


def import_file(
    memory: Memory,
    path: Path | str,
    fmt: Format = "auto",
    *,
    user_id: str | None = None,
    user_prefix: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a file; `progress(done, total)` reports rows written. Errors name the file
    and line (JSON lines) or sample and session (LoCoMo)."""
    path = Path(path)
    fmt, planned = plan_import(path, fmt, user_id, user_prefix)
    rows = sum(len(_source_ids(add.request)) for add in planned)
    triage = _triage(memory, planned)
    total = sum(len(_source_ids(add.request)) for add in triage.fresh)
    start = time.perf_counter()
    try:
        results = memory.add_batch(
            [add.request for add in triage.fresh],
            progress=None if progress is None else (lambda done: progress(done, total)),
        )
    except InvalidRequestError as err:
        raise ValidationError(f"{triage.fresh[err.index].where}: {err.problem}") from err
    archived = 0
    for add, items in zip(triage.fresh, results, strict=True):
        if add.archived:
            for item in items:
                memory.delete(item.id, reason="archived in the imported export")
                archived += 1
    seconds = time.perf_counter() - start
    return ImportReport(
        fmt,
        triage.owners,
        len(planned),
        rows,
        triage.new_rows,
        seconds,
        skipped=rows - triage.new_rows,
        archived=archived,
    )


__all__ = [
    "ImportReport",
    "PlannedAdd",
    "import_file",
    "locomo_requests",
    "plan_import",
    "read_locomo",
]
