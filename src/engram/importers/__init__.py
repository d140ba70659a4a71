"""Import conversations into a Memory: LoCoMo-format JSON and generic JSON lines.

Imports are idempotent: a message whose source id (an exported memory's own id when it
has none) is already stored for its owner is skipped, and the report counts only the
memories this import stored. A file is read twice: once to check all of it (nothing is
written unless every line is valid), then again to write it in batches, so a JSON-lines
import holds one batch in memory, not the file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
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


def _locomo_adds(path: Path, user_id: str | None, user_prefix: str) -> Iterator[PlannedAdd]:
    prefix = user_prefix if user_id is None else f"{user_id}:"
    for conv in read_locomo(path):
        for session, request in _locomo_sessions(conv, prefix):
            yield PlannedAdd(f"{path}: {conv.sample_id} session_{session.index}", request)


@dataclass(frozen=True)
class ImportPlan:
    """A file checked whole and ready to import; `adds()` reads it again, one add at a
    time (JSON lines stream: memory stays bounded whatever the file's size)."""

    path: Path
    format: str
    user_id: str | None
    user_prefix: str
    requests: int
    rows: int
    owners: int

    def adds(self) -> Iterator[PlannedAdd]:
        if self.format == "locomo":
            return _locomo_adds(self.path, self.user_id, self.user_prefix)
        return read_jsonl(self.path, self.user_id)


def _format(path: Path, fmt: str) -> str:
    if not path.is_file():
        raise ValidationError(f"{path} is not a file")
    if fmt == "auto":
        return "locomo" if looks_like_locomo(path) else "jsonl"
    if fmt not in ("locomo", "jsonl"):
        raise ValidationError(f"unknown import format {fmt!r}; use auto, locomo or jsonl")
    return fmt


def _owner(add: PlannedAdd) -> str:
    try:
        return str(Scope.of(add.request.user_id, add.request.agent_id).owner)
    except ValidationError as err:
        raise ValidationError(f"{add.where}: {err}") from err


def plan_import(
    path: Path | str,
    fmt: Format = "auto",
    user_id: str | None = None,
    user_prefix: str = "",
    memory: Memory | None = None,
) -> ImportPlan:
    """Read and check the whole file before anything is written, one add at a time; with
    `memory`, each add is also checked as `Memory.add` checks it. Errors say where."""
    path = Path(path)
    plan = ImportPlan(path, _format(path, fmt), user_id, user_prefix, 0, 0, 0)
    requests = rows = 0
    owners: set[str] = set()
    for add in plan.adds():
        owners.add(_owner(add))
        if memory is not None:
            try:
                memory.check(add.request)
            except ValidationError as err:
                raise ValidationError(f"{add.where}: {err}") from err
        requests += 1
        rows += len(_source_ids(add.request))
    if not requests:
        raise ValidationError(f"{path} holds no messages")
    return replace(plan, requests=requests, rows=rows, owners=len(owners))


@dataclass
class _Triage:
    """Which planned adds of a batch still need writing, and what they will store."""

    fresh: list[PlannedAdd]
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
    """Skip adds whose every message is already stored for its owner; count the rest.
    Earlier batches are stored by now, so a source id repeated across batches is skipped."""
    by_owner: dict[str, tuple[Scope, list[tuple[int, PlannedAdd]]]] = {}
    for i, add in enumerate(planned):
        scope = Scope.of(add.request.user_id, add.request.agent_id)  # checked by the plan
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
                        known.add(sid)  # a source id repeated in the batch is stored once
    return _Triage([add for _, add in sorted(fresh, key=lambda x: x[0])], new_rows)


def _batches(adds: Iterator[PlannedAdd], rows: int) -> Iterator[list[PlannedAdd]]:
    """Consecutive adds, about `rows` messages per batch."""
    batch: list[PlannedAdd] = []
    count = 0
    for add in adds:
        batch.append(add)
        count += len(_source_ids(add.request))
        if count >= rows:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def _write_batch(
    memory: Memory, fresh: list[PlannedAdd], progress: Callable[[int], None] | None
) -> int:
    """Store a batch's fresh adds; archive those exported archived. Returns how many
    were archived."""
    try:
        results = memory.add_batch([add.request for add in fresh], progress=progress)
    except InvalidRequestError as err:
        raise ValidationError(f"{fresh[err.index].where}: {err.problem}") from err
    archived = 0
    for add, items in zip(fresh, results, strict=True):
        if add.archived:
            for item in items:
                memory.delete(item.id, reason="archived in the imported export")
                archived += 1
    return archived


def _offset(progress: Callable[[int, int], None], base: int, total: int, n: int) -> None:
    progress(base + n, total)


def run_import(
    memory: Memory,
    plan: ImportPlan,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_rows: int = 2048,
) -> ImportReport:
    """Write a planned import `batch_rows` messages at a time (one transaction per batch
    and owner); `progress(done, total)` counts messages stored or skipped so far."""
    start = time.perf_counter()
    done = stored = archived = 0
    for batch in _batches(plan.adds(), batch_rows):
        triage = _triage(memory, batch)
        if triage.fresh:
            step = None if progress is None else partial(_offset, progress, done, plan.rows)
            archived += _write_batch(memory, triage.fresh, step)
        stored += triage.new_rows
        done += sum(len(_source_ids(add.request)) for add in batch)
        if progress is not None:
            progress(done, plan.rows)
    return ImportReport(
        plan.format,
        plan.owners,
        plan.requests,
        plan.rows,
        stored,
        time.perf_counter() - start,
        skipped=plan.rows - stored,
        archived=archived,
    )


def import_file(
    memory: Memory,
    path: Path | str,
    fmt: Format = "auto",
    *,
    user_id: str | None = None,
    user_prefix: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Check the whole file, then import it; `progress(done, total)` reports messages.
    Errors name the file and line (JSON lines) or file, sample and session (LoCoMo)."""
    plan = plan_import(path, fmt, user_id, user_prefix, memory=memory)
    return run_import(memory, plan, progress=progress)


__all__ = [
    "ImportPlan",
    "ImportReport",
    "PlannedAdd",
    "import_file",
    "locomo_requests",
    "plan_import",
    "read_locomo",
    "run_import",
]
