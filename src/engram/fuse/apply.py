"""Write a fuse plan into cube A in one store transaction: new texts are embedded first
(B's own vectors are reused for the memories it adds), then every insert, new version and
retention change commits together or not at all. B is only read."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engram.embed.base import Embedder
from engram.errors import StoreError
from engram.fuse.plan import FuseAction, FusePlan, fused_from, provenance_entry
from engram.scope import Scope, owner_args
from engram.store.base import Change, NewMemory, RetentionRow, Store
from engram.text.ingest import index_text
from engram.types import MemoryItem, VersionEvent

SOURCE = "fuse"  # the `source` of every version a fuse writes


@dataclass(frozen=True)
class FuseReport:
    """What a fuse did (or, with `dry_run`, would do): one action per memory of B."""

    source: str
    into: str
    dry_run: bool
    threshold: float
    actions: list[FuseAction]

    def count(self, action: str) -> int:
        return sum(1 for a in self.actions if a.action == action)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "into": self.into,
            "dry_run": self.dry_run,
            "threshold": self.threshold,
            "counts": {k: self.count(k) for k in ("merge", "conflict", "add", "skip")},
            "actions": [a.as_dict() for a in self.actions],
        }


def apply_plan(store: Store, embedder: Embedder, cube: int, plan: FusePlan) -> list[FuseAction]:
    """Write `plan` into A (cube id `cube`); returns its actions, `add`s with their new ids."""
    adds = [a for a in plan.actions if a.action == "add"]
    edits = [a for a in plan.actions if a.action in ("merge", "conflict")]
    conflicts = [a for a in edits if a.action == "conflict"]
    texts = [index_text(a.text or "", _target(a).provenance.name) for a in conflicts]
    vectors = iter(embedder.embed(texts) if texts else [])  # outside the transaction
    new_vectors = {a.source.id: next(vectors) for a in conflicts}
    scope = Scope.of(**owner_args(plan.into))
    with store.transaction():
        keys = _unchanged_targets(store, cube, plan, edits)
        added = _insert(store, cube, scope, plan, adds)
        metadata = {a.target.id: dict(a.target.metadata) for a in edits if a.target}
        for a in edits:
            target = _target(a)
            entry = provenance_entry(a.source, a.score)
            metadata[target.id]["fused_from"] = [*fused_from(metadata[target.id]), entry]
            text = a.text if a.action == "conflict" else None
            change = Change(
                event=VersionEvent.UPDATE if a.action == "conflict" else VersionEvent.MERGE,
                text=text,
                index_text=None if text is None else index_text(text, target.provenance.name),
                vector=new_vectors.get(a.source.id),
                metadata=dict(metadata[target.id]),
                reason=f"{a.action}: {_named(a.source)}: {a.reason}",
                source=SOURCE,
            )
            store.change(cube, keys[target.id], change)
        _merge_retention(store, cube, keys, plan, edits)
    by_source = {a.source.id: item for a, item in zip(adds, added, strict=True)}
    return [
        replace(a, target_id=by_source[a.source.id].id) if a.source.id in by_source else a
        for a in plan.actions
    ]


def _target(a: FuseAction) -> MemoryItem:
    assert a.target is not None, "merge and conflict actions name A's memory"
    return a.target


def _named(item: MemoryItem) -> str:
    return f"{item.provenance.owner} memory {item.id} v{item.version}"


def _unchanged_targets(
    store: Store, cube: int, plan: FusePlan, edits: list[FuseAction]
) -> dict[str, int]:
    """A's store keys of the memories the plan changes, each still at the version planned
    against (else nothing is written: the fuse is planned again by running it again)."""
    keys: dict[str, int] = {}
    for a in edits:
        target = _target(a)
        found = store.locate(target.id)
        if found is None or found.cube != cube:
            raise StoreError(f"{target.id} left {plan.into} during the fuse; nothing was written")
        keys[target.id] = found.key
    now = store.by_keys(cube, list(keys.values()))
    for a in edits:
        target = _target(a)
        current = now.get(keys[target.id])
        if current is None or current.version != target.version:
            raise StoreError(
                f"{target.id} of {plan.into} changed during the fuse; nothing was written "
                "(run the fuse again)"
            )
    return keys


def _insert(
    store: Store, cube: int, scope: Scope, plan: FusePlan, adds: list[FuseAction]
) -> list[MemoryItem]:
    """B's memories new to A, as copies: text, type, provenance, metadata (with
    `fused_from`), B's vector; retention: tier, expiry, pin and strength as in B."""
    if not adds:
        return []
    wanted = [a.source.provenance.source_id for a in adds if a.source.provenance.source_id]
    taken = store.known_sources(cube, [s for s in wanted if s is not None])
    rows = [_row(a.source, scope, plan, taken) for a in adds]
    vectors = np.stack([plan.vectors[a.source.id] for a in adds])
    items = store.insert(cube, rows, vectors)
    keys = {}
    for item in items:
        found = store.locate(item.id)
        assert found is not None
        keys[item.id] = found.key
    rows_b = [plan.retention.get(a.source.id) for a in adds]
    pinned = [keys[i.id] for i, r in zip(items, rows_b, strict=True) if r is not None and r.pinned]
    if pinned:
        store.set_retention(cube, pinned, pinned=True)
    strengths = {
        keys[i.id]: r.strength
        for i, r in zip(items, rows_b, strict=True)
        if r is not None and r.strength is not None
    }
    if strengths:
        _set_strength(store, cube, strengths)
    return items


def _row(source: MemoryItem, scope: Scope, plan: FusePlan, taken: set[str]) -> NewMemory:
    p = source.provenance
    retention: RetentionRow | None = plan.retention.get(source.id)
    entry = provenance_entry(source, None)
    return NewMemory(
        text=source.memory,
        index_text=index_text(source.memory, p.name),
        type=source.type,
        metadata={**source.metadata, "fused_from": [*fused_from(source.metadata), entry]},
        user_id=scope.user_id,
        agent_id=scope.agent_id if scope.user_id is None else p.agent_id,
        session_id=p.session_id,
        source_id=p.source_id if p.source_id not in taken else None,
        turn_index=p.turn_index,
        role=p.role,
        name=p.name,
        occurred_at=p.timestamp,
        source=SOURCE,
        tier=retention.tier if retention else "long_term",
        expires_at=retention.expires_at if retention else None,
    )


def _set_strength(store: Store, cube: int, strengths: dict[int, float]) -> None:
    store.reinforce(
        cube,
        list(strengths),
        lambda row: strengths[row.key],
        recalled=False,
        at=datetime.now(UTC),
    )


def _merge_retention(
    store: Store, cube: int, keys: dict[str, int], plan: FusePlan, edits: list[FuseAction]
) -> None:
    """One memory of several: pinned when any was; the strongest strength; A's tier and
    expiry stay (a pin keeps it from expiring)."""
    for target_id, key in keys.items():
        mine = plan.retention.get(target_id)
        rows = [plan.retention.get(a.source.id) for a in edits if _target(a).id == target_id]
        theirs = [r for r in rows if r is not None]
        if mine is None or not theirs:
            continue
        if any(r.pinned for r in theirs) and not mine.pinned:
            store.set_retention(cube, [key], pinned=True)
        best = max((r.strength for r in theirs if r.strength is not None), default=None)
        if best is not None and (mine.strength is None or best > mine.strength):
            _set_strength(store, cube, {key: best})
