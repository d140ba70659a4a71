"""Plan a fuse of cube B into cube A (docs/bundles.md#fuse): for every memory of B, one
action — `merge` (a near-duplicate of A's), `conflict` (says otherwise than A's), `add`
or `skip` (already fused, or archived in B). Planning only reads; `engram.fuse.apply`
writes the plan."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engram.extract.llm import KINDS
from engram.extract.prompts import Candidate, Decision, ask, check_decision, decision_messages
from engram.llm.base import ChatModel
from engram.store.base import MemoryFilter, RetentionRow, Store
from engram.types import MemoryItem, MemoryState

# Cosine (packaged all-MiniLM-L6-v2) at which a memory of B is the same memory as one of A.
# Measured on LoCoMo conversations 1-3 (docs/bundles.md#choosing-the-threshold): 0.14% of
# distinct turns have a neighbour this close, 92.5% of re-typed turns (case, punctuation,
# contractions) reach it; a turn with one number or name changed reaches it half the time
# (median 0.954), so cosine alone cannot see a conflict: that is the LLM's decision.
FUSE_THRESHOLD = 0.95
_WORDS = re.compile(r"\w+")
ALL_STATES = (MemoryState.ACTIVE, MemoryState.ARCHIVED)

Action = Literal["merge", "conflict", "add", "skip"]


@dataclass(frozen=True)
class FuseAction:
    """What happens to one memory of B. `target` is A's memory it merges into or
    conflicts with (for `add`, the new memory once written); `score` the cosine of the two;
    `text` the new text of A's memory for a conflict."""

    action: Action
    source: MemoryItem
    reason: str
    target: MemoryItem | None = None
    score: float | None = None
    text: str | None = None
    target_id: str | None = None  # `add`: the id A gave the copy (after a real run)

    def as_dict(self) -> dict[str, Any]:
        target = self.target_id or (self.target.id if self.target else None)
        return {
            "action": self.action,
            "source_id": self.source.id,
            "source_version": self.source.version,
            "target_id": target,
            "score": None if self.score is None else round(self.score, 4),
            "reason": self.reason,
            "text": self.text,
        }


@dataclass
class FusePlan:
    """Every memory of B, in key order, with its action; read from both cubes."""

    source: str
    into: str
    threshold: float
    actions: list[FuseAction] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # B memory id -> vector
    retention: dict[str, RetentionRow] = field(default_factory=dict)  # both cubes, by id


@dataclass(frozen=True)
class _Cube:
    """Every memory of a cube (both states) in key order, with keys and retention rows."""

    keys: list[int]
    items: list[MemoryItem]
    rows: dict[str, RetentionRow]

    def live(self) -> tuple[list[int], list[MemoryItem]]:
        pairs = [(k, i) for k, i in zip(self.keys, self.items, strict=True)
                 if i.state is MemoryState.ACTIVE]  # fmt: skip
        return [k for k, _ in pairs], [i for _, i in pairs]


def _read(store: Store, cube: int) -> _Cube:
    keys = store.keys(cube, MemoryFilter(states=ALL_STATES))
    found = store.by_keys(cube, keys)
    keys = [k for k in keys if k in found]
    rows = store.retention_rows(cube, keys)
    return _Cube(keys, [found[k] for k in keys], {r.id: r for r in rows})


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def normalized(text: str) -> str:
    """Text compared for identity: case and everything but letters and digits ignored."""
    return " ".join(_WORDS.findall(text.casefold()))


def fused_from(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The memories of other cubes fused into a memory (its `metadata["fused_from"]`)."""
    entries = metadata.get("fused_from")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def provenance_entry(source: MemoryItem, score: float | None) -> dict[str, Any]:
    """What A records of B's memory: owner, id, version, its provenance, its text."""
    p = source.provenance
    return {
        "owner": p.owner,
        "id": source.id,
        "version": source.version,
        "memory": source.memory,
        "type": source.type,
        "source": p.source,
        "source_id": p.source_id,
        "session_id": p.session_id,
        "timestamp": None if p.timestamp is None else p.timestamp.isoformat(),
        "created_at": source.created_at.isoformat(),
        "score": None if score is None else round(score, 4),
    }


class Planner:
    """Decides each of B's memories against A, in this order: archived in B, or this
    version fused before: skip; an older version fused before, or A's source id: merge
    (same text) or conflict (other text); same type and text: merge; with an LLM, a fact,
    preference or event as the LLM extractor decides (`engram.extract.llm`: NONE merges,
    UPDATE and DELETE conflict, ADD adds); same type at cosine >= threshold: merge; add."""

    def __init__(
        self,
        store: Store,
        cubes: tuple[int, int],
        owners: tuple[str, str],
        threshold: float,
        llm: ChatModel | None,
        neighbours: int,
        retries: int,
    ):
        self.store, (self.b_cube, self.a_cube) = store, cubes
        self.plan = FusePlan(owners[0], owners[1], threshold)
        self.llm, self.neighbours, self.retries = llm, neighbours, retries
        self.fused: dict[tuple[Any, Any], tuple[int, MemoryItem]] = {}
        self.keyed: dict[str, MemoryItem] = {}  # A's memories by source id
        self.live: list[MemoryItem] = []  # A's active memories, their vectors and types
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.types = np.zeros(0, dtype=object)
        self.by_id: dict[str, int] = {}
        self.same_text: dict[tuple[str, str], MemoryItem] = {}  # (type, normalized text)

    def run(self) -> FusePlan:
        b, a = _read(self.store, self.b_cube), _read(self.store, self.a_cube)
        self.plan.retention = {**b.rows, **a.rows}
        for item in a.items:  # what was fused before: (owner, id) -> (version, A's memory)
            for e in fused_from(item.metadata):
                seen = self.fused.get((e.get("owner"), e.get("id")))
                if seen is None or _int(e.get("version")) > seen[0]:
                    self.fused[(e.get("owner"), e.get("id"))] = (_int(e.get("version")), item)
        for item in a.items:
            if item.provenance.source_id is not None:
                self.keyed.setdefault(item.provenance.source_id, item)
        live_keys, self.live = a.live()
        self.matrix = self.store.vectors(self.a_cube, live_keys)
        self.types = np.array([item.type for item in self.live], dtype=object)
        self.by_id = {item.id: i for i, item in enumerate(self.live)}
        for item in self.live:
            self.same_text.setdefault((item.type, normalized(item.memory)), item)
        b_keys, b_live = b.live()
        b_vectors = self.store.vectors(self.b_cube, b_keys)
        self.plan.vectors = dict(zip((i.id for i in b_live), b_vectors, strict=True))
        for item in b.items:
            version, into = self.fused.get((item.provenance.owner, item.id), (0, None))
            if item.state is not MemoryState.ACTIVE:
                why = f"archived in {self.plan.source}: stays there, not fused"
                self.plan.actions.append(FuseAction("skip", item, why))
            elif into is not None and version >= item.version:
                why = f"v{item.version} was fused before, into {into.id}"
                self.plan.actions.append(FuseAction("skip", item, why, target=into))
            else:
                self.plan.actions.append(self._decide(item, self.plan.vectors[item.id]))
        return self.plan

    def _decide(self, item: MemoryItem, vector: np.ndarray) -> FuseAction:
        live = self.live
        sims = self.matrix @ vector if live else np.zeros(0, dtype=np.float32)
        version, before = self.fused.get((item.provenance.owner, item.id), (0, None))
        twins = [(f"v{version} fused before into it", before)] + [
            (f"same source id {key!r}", self.keyed.get(key))
            for key in (item.provenance.source_id, item.id)
            if key is not None
        ]
        for why, twin in twins:
            if twin is None or twin.state is not MemoryState.ACTIVE:
                continue  # an archived twin: B's memory is added (without the source id)
            score = float(sims[self.by_id[twin.id]])
            if normalized(twin.memory) == normalized(item.memory):
                return FuseAction("merge", item, f"{why}, same text", twin, score)
            return FuseAction("conflict", item, f"{why}, other text", twin, score, item.memory)
        twin = self.same_text.get((item.type, normalized(item.memory)))
        if twin is not None:
            score = float(sims[self.by_id[twin.id]])
            return FuseAction("merge", item, "same text", twin, score)
        if self.llm is not None and item.type in KINDS and 3 <= len(item.memory) <= 1000:
            decided = self._ask(item, sims, live)
            if decided is not None:
                return decided
        same = np.flatnonzero(self.types == item.type) if live else np.zeros(0, dtype=np.int64)
        if len(same):
            best = int(same[np.argmax(sims[same])])
            if sims[best] >= self.plan.threshold:
                why = f"near-duplicate (cosine {sims[best]:.3f} >= {self.plan.threshold})"
                if normalized(live[best].memory) != normalized(item.memory):
                    why += "; the texts differ (B's is kept in the merge version)"
                return FuseAction("merge", item, why, live[best], float(sims[best]))
        return FuseAction("add", item, f"new to {self.plan.into}")

    def _ask(self, item: MemoryItem, sims: np.ndarray, live: list[MemoryItem]) -> FuseAction | None:
        """The LLM extractor's decision for B's memory against A's most similar facts,
        preferences and events (None when A has none)."""
        assert self.llm is not None
        kinds = [i for i, t in enumerate(live) if t.type in KINDS]
        order = sorted(kinds, key=lambda i: -float(sims[i]))[: self.neighbours]
        if not order:
            return None
        shown = [live[i] for i in order]
        candidate = Candidate(type=item.type, text=item.memory)  # type: ignore[arg-type]
        decision: Decision = ask(
            self.llm,
            decision_messages(candidate, shown),
            Decision,
            check_decision,
            len(shown),
            self.retries,
            "fuse decision",
        )
        number = decision.target if decision.target and decision.target <= len(order) else 1
        pick = order[number - 1]
        target, score = live[pick], float(sims[pick])
        why = f"{decision.action} by the LLM: {decision.reason}"
        if decision.action == "NONE":
            return FuseAction("merge", item, why, target, score)
        if decision.action == "UPDATE":
            return FuseAction("conflict", item, why, target, score, text=decision.text)
        if decision.action == "DELETE":
            return FuseAction("conflict", item, why, target, score, text=item.memory)
        return FuseAction("add", item, why)
