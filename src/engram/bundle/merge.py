"""Incremental import: what a bundle adds to an owner this home holds already.

An import never deletes and never overwrites history. It is the union of the held owner and
the bundle, row by row in the neutral layout of `engram.store.migrate.TABLES`:

- a memory the home lacks is added; one both hold takes the row of the side with the longer
  version chain (same chain: the later `updated_at`), and each use counter the larger value
  of the two (access and recall counts, strength, last access and recall), so a newer export
  of the same cube updates it and an older one changes nothing;
- the chains must agree: one side's versions are the first versions of the other's. Chains
  that went apart (the memory was changed in both places), or a bundle memory whose source
  turn the home holds under another id, are a conflict: nothing is imported (`engram cube
  fuse` merges cubes that went apart);
- versions, feedback queries (by query and time) and labels, extraction jobs (by session,
  extractor and input), idempotency keys and tier provenance the home lacks are added;
- the reranker with more feedback events, and per memory type the retention policy set
  later, are kept.

`plan_merge` computes the change and what the owner must read back as afterwards
(`OwnerMerge.merged`); each store's transfer applies it in one transaction
(`apply(merge)`), and the import compares the owner read back with `merged`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engram.bundle.errors import BundleConflictError
from engram.errors import StoreError
from engram.store.migrate import TABLES, OwnerDump, Row, mismatch

_MEMORY = TABLES["memories"]
_ID, _VERSION, _UPDATED = (_MEMORY.index(c) for c in ("id", "version", "updated_at"))
_SOURCE = _MEMORY.index("source_id")
USE_COUNTERS = tuple(
    _MEMORY.index(c)
    for c in ("access_count", "last_accessed_at", "strength", "last_recalled_at", "recall_count")
)


@dataclass
class OwnerMerge:
    """The change an import makes to a held owner. `new` holds rows to insert (feedback
    rows numbered as in `merged`); `changed` memory rows overwrite the held row of their id;
    `drop_reranker` and `drop_policies` (types) remove rows `new` replaces."""

    owner: str
    new: OwnerDump
    merged: OwnerDump  # what the owner reads back as afterwards
    changed: list[Row] = field(default_factory=list)
    drop_reranker: bool = False
    drop_policies: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.new.empty and not self.changed

    def counts(self) -> dict[str, int]:
        """Rows added per table, and memories updated."""
        out = {t: len(rows) for t, rows in self.new.tables.items() if rows and t != "cubes"}
        if self.changed:
            out["memories_updated"] = len(self.changed)
        return out


def plan_merge(held: OwnerDump, incoming: OwnerDump) -> OwnerMerge:
    """What importing `incoming` adds to `held` (both of one owner); BundleConflictError
    when the two went apart."""
    new, merged = OwnerDump(held.owner), OwnerDump(held.owner)
    merge = OwnerMerge(held.owner, new, merged)
    h, b, n, m = held.tables, incoming.tables, new.tables, merged.tables
    n["cubes"] = [] if h["cubes"] else list(b["cubes"])
    m["cubes"] = h["cubes"] or b["cubes"]
    _memories(held, incoming, merge, merged)
    _feedback(h, b, n, m)
    _replaced(h, b, merge, m)
    for table, key in (
        ("jobs", lambda r: r[:3]),
        ("idempotency_keys", lambda r: r[0]),
        ("tier_artifacts", lambda r: r[:3]),
    ):
        n[table] = _missing(h[table], b[table], key)
    m["jobs"] = h["jobs"] + n["jobs"]
    m["idempotency_keys"] = sorted(h["idempotency_keys"] + n["idempotency_keys"])
    m["tier_artifacts"] = sorted(
        h["tier_artifacts"] + n["tier_artifacts"], key=lambda r: tuple(c or "" for c in r[:3])
    )
    return merge


def _missing(held: list[Row], incoming: list[Row], key: Any) -> list[Row]:
    seen = {key(r) for r in held}
    return [r for r in incoming if key(r) not in seen]


def _chains(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    for chain in out.values():
        chain.sort(key=lambda r: r[1])
    return out


def _memories(held: OwnerDump, incoming: OwnerDump, merge: OwnerMerge, merged: OwnerDump) -> None:
    h, b = held.tables, incoming.tables
    held_rows = {r[_ID]: r for r in h["memories"]}
    held_chains, chains = _chains(h["versions"]), _chains(b["versions"])
    sources = {r[_SOURCE]: r[_ID] for r in h["memories"] if r[_SOURCE] is not None}
    new_rows: list[Row] = []
    versions: dict[str, list[Row]] = {mid: list(chain) for mid, chain in held_chains.items()}
    for row in b["memories"]:
        mid = row[_ID]
        mine, theirs = held_chains.get(mid, []), chains.get(mid, [])
        if mid not in held_rows:
            other = sources.get(row[_SOURCE]) if row[_SOURCE] is not None else None
            if other is not None:
                raise BundleConflictError(
                    f"memory {mid} of the bundle comes from source {row[_SOURCE]!r}, which "
                    f"this home holds as memory {other}; nothing was imported (engram cube "
                    "fuse merges cubes that went apart)"
                )
            new_rows.append(row)
            versions[mid] = list(theirs)
            continue
        shorter, longer = sorted((mine, theirs), key=len)
        if longer[: len(shorter)] != shorter:
            raise BundleConflictError(
                f"memory {mid} was changed both here and in the bundle (their version "
                "chains went apart); nothing was imported (engram cube fuse merges cubes "
                "that went apart)"
            )
        versions[mid] = list(longer)
        merged_row = _winner(held_rows[mid], row, len(mine), len(theirs))
        if merged_row != held_rows[mid]:
            merge.changed.append(merged_row)
            held_rows[mid] = merged_row
    merge.new.tables["memories"] = new_rows
    merge.new.tables["versions"] = [
        v for mid, chain in versions.items() for v in chain[len(held_chains.get(mid, [])) :]
    ]
    order = [r[_ID] for r in h["memories"]] + [r[_ID] for r in new_rows]
    rows = {**held_rows, **{r[_ID]: r for r in new_rows}}
    merged.tables["memories"] = [rows[mid] for mid in order]
    merged.tables["versions"] = [v for mid in order for v in versions.get(mid, [])]


def _winner(mine: Row, theirs: Row, mine_versions: int, their_versions: int) -> Row:
    """The row of the side with the longer chain (or the later update), with each use
    counter the larger of the two."""
    take_theirs = (their_versions, theirs[_VERSION], theirs[_UPDATED] or "") > (
        mine_versions,
        mine[_VERSION],
        mine[_UPDATED] or "",
    )
    row = list(theirs if take_theirs else mine)
    for at in USE_COUNTERS:
        values = [v for v in (mine[at], theirs[at]) if v is not None]
        row[at] = max(values) if values else None
    return tuple(row)


def _feedback(
    h: dict[str, list[Row]],
    b: dict[str, list[Row]],
    n: dict[str, list[Row]],
    m: dict[str, list[Row]],
) -> None:
    """Queries the home lacks (by query and time) are appended, numbered after the held
    ones; labels the home lacks (by query and memory) are added."""
    ordinal = {(q[1], q[3]): q[0] for q in h["feedback_queries"]}
    renumber: dict[int, int] = {}
    added: list[Row] = []
    for q in b["feedback_queries"]:
        at = ordinal.get((q[1], q[3]))
        if at is None:
            at = len(h["feedback_queries"]) + len(added)
            added.append((at, *q[1:]))
            ordinal[(q[1], q[3])] = at
        renumber[q[0]] = at
    n["feedback_queries"] = added
    m["feedback_queries"] = h["feedback_queries"] + added
    held = {(r[0], r[1]) for r in h["feedback"]}
    labels = [(renumber[r[0]], *r[1:]) for r in b["feedback"]]
    n["feedback"] = [r for r in labels if (r[0], r[1]) not in held]
    position = {row[_ID]: at for at, row in enumerate(m["memories"])}
    m["feedback"] = sorted(h["feedback"] + n["feedback"], key=lambda r: (r[0], position[r[1]]))


def _replaced(
    h: dict[str, list[Row]], b: dict[str, list[Row]], merge: OwnerMerge, m: dict[str, list[Row]]
) -> None:
    """The reranker trained on more feedback events; per type the policy set later."""
    n = merge.new.tables
    mine, theirs = h["rerankers"], b["rerankers"]
    if theirs and (not mine or (theirs[0][1], theirs[0][2]) > (mine[0][1], mine[0][2])):
        n["rerankers"], merge.drop_reranker = list(theirs), bool(mine)
    m["rerankers"] = n["rerankers"] or mine
    policies = {r[0]: r for r in h["retention_policies"]}
    for row in b["retention_policies"]:
        held = policies.get(row[0])
        if held is None or (row[2] or "") > (held[2] or ""):
            n["retention_policies"].append(row)
            if held is not None:
                merge.drop_policies.append(row[0])
            policies[row[0]] = row
    m["retention_policies"] = [policies[t] for t in sorted(policies)]


def check_merged(merge: OwnerMerge, got: OwnerDump, where: str) -> None:
    """StoreError unless the owner reads back as `merge.merged` (called before commit)."""
    detail = mismatch(merge.merged, got)
    if detail is not None:
        raise StoreError(
            f"{where}: owner {merge.owner!r} would not read back as merged ({detail}); "
            "nothing was imported"
        )
