"""Write an extractor's Plan: embed first, then every insert, new version and archive in
one store transaction (all or nothing). Provenance: each derived memory lists the turns it
came from (`metadata["source_ids"]`, `metadata["source_memory_ids"]`) and its extractor."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engram.embed.base import Embedder
from engram.extract.base import Derived, Plan, source_ids
from engram.store.base import Change, NewMemory, Store
from engram.text.ingest import index_text
from engram.types import MemoryItem, MemoryState, VersionEvent


@dataclass(frozen=True)
class Applied:
    added: int = 0
    updated: int = 0
    archived: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def apply_plan(
    store: Store,
    embedder: Embedder,
    cube: int,
    plan: Plan,
    *,
    extractor: str,
    source: str,
    existing: dict[str, MemoryItem],
) -> Applied:
    """Write `plan`; `existing` maps derived keys to the memories made for them before."""
    inserts: list[NewMemory] = []
    changes: list[tuple[str, Change]] = []
    unchanged = 0
    for d in plan.derived:
        old = existing.get(d.key) if d.key else None
        if old is None:
            inserts.append(_new_row(d, extractor, source))
        elif old.state is MemoryState.ACTIVE and old.memory != d.text:
            meta = _metadata(d, extractor)
            reason = "re-derived: its sources changed"
            changes.append((old.id, _change(VersionEvent.UPDATE, d.text, meta, source, reason)))
        else:
            unchanged += 1  # same text, or archived by a person or a merge: left alone
    for r in plan.revisions:
        event = VersionEvent(r.event)
        changes.append((r.item.id, _change(event, r.text, r.metadata, source, r.reason)))
    texts = [row.index_text for row in inserts] + [
        c.index_text for _, c in changes if c.index_text is not None
    ]
    vectors = embedder.embed(texts)  # outside the transaction: embedding is the slow part
    changes = _with_vectors(changes, vectors[len(inserts) :])
    archived = 0
    with store.transaction():
        if inserts:
            store.insert(cube, inserts, vectors[: len(inserts)])
        for memory_id, change in changes:
            found = store.locate(memory_id)
            if found is not None and found.cube == cube:
                store.change(cube, found.key, change)
        for t in plan.retirements:
            found = store.locate(t.item.id)
            if found is not None and found.cube == cube:
                archived += store.set_state(
                    cube, [found.key], MemoryState.ARCHIVED, VersionEvent(t.event), t.reason, source
                )
    return Applied(len(inserts), len(changes), archived, unchanged)


def _metadata(d: Derived, extractor: str) -> dict[str, object]:
    return {
        **d.metadata,
        "extractor": extractor,
        "source_ids": source_ids(d.sources),
        "source_memory_ids": [s.id for s in d.sources],
    }


def _new_row(d: Derived, extractor: str, source: str) -> NewMemory:
    first = d.sources[0].provenance if d.sources else None
    return NewMemory(
        text=d.text,
        index_text=d.text,
        type=d.type,
        metadata=_metadata(d, extractor),
        user_id=first.user_id if first else None,
        agent_id=first.agent_id if first else None,
        session_id=d.session_id,
        source_id=d.key,
        turn_index=None,
        role=None,
        name=None,
        occurred_at=d.occurred_at,
        source=source,
    )


def _change(
    event: VersionEvent,
    text: str | None,
    metadata: dict[str, object] | None,
    source: str,
    reason: str,
) -> Change:
    return Change(
        event=event,
        text=text,
        index_text=None if text is None else index_text(text, None),
        metadata=metadata,
        reason=reason,
        source=source,
    )


def _with_vectors(
    changes: list[tuple[str, Change]], vectors: np.ndarray
) -> list[tuple[str, Change]]:
    out, i = [], 0
    for memory_id, change in changes:
        if change.index_text is not None:
            change = replace(change, vector=vectors[i])
            i += 1
        out.append((memory_id, change))
    return out
