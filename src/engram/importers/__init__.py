"""Import conversations into a Memory: LoCoMo-format JSON and generic JSON lines."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engram.errors import ValidationError
from engram.importers.jsonl import read_jsonl
from engram.importers.locomo import Conversation, looks_like_locomo, read_locomo
from engram.memory import AddRequest, Memory

Format = Literal["auto", "locomo", "jsonl"]


@dataclass(frozen=True)
class ImportReport:
    format: str
    owners: int
    requests: int
    rows: int
    stored: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def locomo_requests(conv: Conversation, user_prefix: str = "") -> list[AddRequest]:
    """One add per session: owner = the sample id, turns keep their dia_id and the date."""
    return [
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
        )
        for session in conv.sessions
        if session.turns
    ]


def plan_import(
    path: Path, fmt: Format = "auto", user_id: str | None = None, user_prefix: str = ""
) -> tuple[str, list[AddRequest]]:
    """Read and validate a whole file before anything is written."""
    if not path.is_file():
        raise ValidationError(f"{path} is not a file")
    if fmt == "auto":
        fmt = "locomo" if looks_like_locomo(path) else "jsonl"
    if fmt == "locomo":
        prefix = user_prefix if user_id is None else f"{user_id}:"
        requests = [r for conv in read_locomo(path) for r in locomo_requests(conv, prefix)]
    elif fmt == "jsonl":
        requests = [req for _, req in read_jsonl(path, user_id)]
    else:
        raise ValidationError(f"unknown import format {fmt!r}; use auto, locomo or jsonl")
    if not requests:
        raise ValidationError(f"{path} holds no messages")
    return fmt, requests


def import_file(
    memory: Memory,
    path: Path | str,
    fmt: Format = "auto",
    *,
    user_id: str | None = None,
    user_prefix: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a file; `progress(done, total)` reports rows written."""
    path = Path(path)
    fmt, requests = plan_import(path, fmt, user_id, user_prefix)
    total = sum(_count(r) for r in requests)
    start = time.perf_counter()
    results = memory.add_batch(
        requests, progress=None if progress is None else (lambda done: progress(done, total))
    )
    seconds = time.perf_counter() - start
    owners = {item.provenance.owner for items in results for item in items}
    stored = sum(len(items) for items in results)
    return ImportReport(fmt, len(owners), len(requests), total, stored, seconds)


def _count(request: AddRequest) -> int:
    msgs = request.messages
    return len(msgs) if isinstance(msgs, list | tuple) else 1


__all__ = ["ImportReport", "import_file", "locomo_requests", "plan_import", "read_locomo"]
