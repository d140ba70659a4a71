"""How each memory of a cube is used, read once per plan: retrievals, feedback citations,
recency, retention strength and the stability of its text across versions; and which KV
blocks and adapter versions already hold it. Read-only: planning never writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from engram.lifecycle.api import utc
from engram.lifecycle.report import Tier
from engram.store.base import RetentionRow
from engram.store.feedback import FeedbackLabel
from engram.tiers import ACTIVATION, PARAMETRIC
from engram.types import MemoryItem, Version

if TYPE_CHECKING:
    from engram.config import SchedulerConfig
    from engram.cube import MemCube
    from engram.lifecycle.core import Lifecycle

DAY_S = 86400.0


@dataclass(frozen=True)
class TextHistory:
    """When a memory's current text was written, and how often its text changed."""

    version: int  # the first version with the current text
    since: datetime
    changes: int


@dataclass(frozen=True)
class MemoryUse:
    """The signals of one active memory that the policies decide on."""

    item: MemoryItem
    row: RetentionRow
    retrievals: int  # search hits (access count)
    citations: int  # feedback reports 'cited' or 'used'
    wrong: int  # feedback reports 'wrong'
    last_used: datetime | None  # last retrieval or recall
    heat: float  # (retrievals + w * citations), halved per half-life without use
    retrievability: float  # R of its forgetting curve at the plan's time
    text: TextHistory
    buffered: bool  # in its session's working buffer, as the replacement policy leaves it

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def confirmations(self) -> int:
        """Successful recalls: cited/used reports (each also counts as a recall) or
        explicit reinforcement, whichever is more."""
        return max(self.citations, self.row.recall_count)


@dataclass(frozen=True)
class KVHeld:
    """A scheduler-shaped KV block of the owner: built from exactly one memory."""

    key: str
    memory_id: str
    memory_version: int
    nbytes: int


@dataclass
class Usage:
    """Everything one plan reads about one owner's cube."""

    owner: str
    cube: int
    at: datetime
    config: SchedulerConfig
    memories: list[MemoryUse]
    kv: dict[str, KVHeld]  # memory id -> its own block
    learned: dict[str, int]  # memory id -> newest version of it an adapter learned

    def days_since(self, when: datetime | None) -> float:
        """Days from `when` to the plan's time (0 for a later time; inf for None)."""
        if when is None:
            return float("inf")
        return max((self.at - utc(when)).total_seconds() / DAY_S, 0.0)

    def bytes_per_char(self) -> float:
        """Block bytes per character of text, from the owner's own blocks when it has some."""
        texts = {u.id: len(u.item.memory) for u in self.memories}
        held = [b for b in self.kv.values() if texts.get(b.memory_id)]
        chars = sum(texts[b.memory_id] for b in held)
        if not chars:
            return self.config.kv.bytes_per_char
        return sum(b.nbytes for b in held) / chars

    def current(self, use: MemoryUse, built_from: int | None) -> bool:
        """Whether an artifact built from version `built_from` has the memory's text now."""
        return built_from is not None and built_from >= use.text.version


def text_history(item: MemoryItem, versions: Sequence[Version]) -> TextHistory:
    """Text changes across versions; versions that only changed metadata or recorded a
    move (the scheduler's own) do not count."""
    first = TextHistory(1, item.created_at, 0)
    previous: str | None = None
    found = first
    for v in sorted(versions, key=lambda v: v.version):
        if v.memory is None:
            continue
        if previous is not None and v.memory != previous:
            found = TextHistory(v.version, v.at, found.changes + 1)
        previous = v.memory
    return found


def read_usage(cube: MemCube, lifecycle: Lifecycle, config: SchedulerConfig, at: datetime) -> Usage:
    """Read an owner's cube for planning (active memories only)."""
    store = cube.store
    rows = store.retention_rows(cube.id)
    items = store.by_keys(cube.id, [r.key for r in rows])
    log = store.feedback(cube.id)
    good, bad = Counter[int](), Counter[int]()
    for key, label in zip(log.keys.tolist(), log.labels.tolist(), strict=True):
        (bad if label == FeedbackLabel.WRONG.value else good)[int(key)] += 1
    planner = lifecycle.planner(cube.owner, cube.id, at)
    half_life = config.heat_half_life_days
    sessions = {r.session_id for r in rows if r.tier == Tier.WORKING.value}
    buffered = {k for session in sessions for k in lifecycle.working(cube.id, session)}
    memories = []
    for row in rows:
        item = items.get(row.key)
        if item is None:  # erased meanwhile
            continue
        used = [t for t in (row.last_accessed_at, row.last_recalled_at) if t is not None]
        last = max((utc(t) for t in used), default=None)
        idle = 0.0 if last is None else max((at - last).total_seconds() / DAY_S, 0.0)
        raw = row.access_count + config.citation_weight * good[row.key]
        history = store.history(cube.id, row.key) if item.version > 1 else []
        memories.append(
            MemoryUse(
                item=item,
                row=row,
                retrievals=row.access_count,
                citations=good[row.key],
                wrong=bad[row.key],
                last_used=last,
                heat=raw * 0.5 ** (idle / half_life),
                retrievability=planner.score(row).retrievability,
                text=text_history(item, history),
                buffered=row.key in buffered,
            )
        )
    return Usage(cube.owner, cube.id, at, config, memories, _kv_blocks(cube), _learned(cube))


def _kv_blocks(cube: MemCube) -> dict[str, KVHeld]:
    sources: dict[str, list[tuple[str, int]]] = {}
    for s in cube.store.artifacts(ACTIVATION, cube.owner):
        sources.setdefault(s.artifact, []).append((s.memory_id, s.memory_version))
    sizes = {a.key: int(a.detail.get("bytes") or 0) for a in cube.tiers[ACTIVATION].held()}
    found = {}
    for key, memories in sources.items():
        if len(memories) == 1 and key in sizes:
            ((memory_id, version),) = memories
            found[memory_id] = KVHeld(key, memory_id, version, sizes[key])
    return found


def _learned(cube: MemCube) -> dict[str, int]:
    learned: dict[str, int] = {}
    for s in cube.store.artifacts(PARAMETRIC, cube.owner):
        learned[s.memory_id] = max(learned.get(s.memory_id, 0), s.memory_version)
    return learned
