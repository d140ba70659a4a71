"""Running scheduled moves as jobs of the store's queue (`engram worker`, `m.run_jobs()`,
or the extraction worker thread): build and evict KV blocks, teach the adapter a batch,
archive cold memories. Each executed move writes a version row (rule, reason, source
'scheduler', when) into the memory's history. Handlers are idempotent: a move already
done (or made moot by an erasure) is skipped, so a job whose worker died runs again safely."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engram.parametric.tier import facts_of
from engram.scheduler.move import SOURCE
from engram.scheduler.usage import read_usage, text_history
from engram.scope import Scope, owner_args
from engram.store.base import Change, RetentionPlan
from engram.tiers import ACTIVATION, PARAMETRIC
from engram.types import MemoryItem, MemoryState, VersionEvent

if TYPE_CHECKING:
    from collections.abc import Callable

    from engram.activation.tier import ActivationTier
    from engram.cube import MemCube
    from engram.memory import Memory
    from engram.parametric.tier import ParametricTier
    from engram.store.jobs import Job

Result = dict[str, object]
ARROWS = {"build": "text -> activation", "evict": "activation -> text"}
ARROWS |= {"learn": "text -> parametric", "archive": "text -> archive"}


def _moves(job: Job) -> list[dict[str, Any]]:
    return [m for payload in job.payloads for m in payload.get("moves", [])]


def history_reason(move: dict[str, Any]) -> str:
    """What a move's version row says: the rule, the tiers and the plan's reason."""
    return f"{move['rule']}: {ARROWS[move['action']]}: {move['reason']}"


class MoveRunner:
    """The scheduler's job handlers for one Memory; models load once, on first build."""

    def __init__(self, memory: Memory):
        self.memory = memory

    def handlers(self) -> dict[str, Callable[[Job], Result]]:
        return {
            "scheduler:kv": self.run_kv,
            "scheduler:adapter": self.run_adapter,
            "scheduler:decay": self.run_decay,
        }

    # -- plumbing ---------------------------------------------------------------------

    def _cube(self, job: Job) -> MemCube | None:
        cube = self.memory.cube(Scope.of(**owner_args(job.owner)))
        return cube if cube is not None and cube.id == job.cube else None

    def _items(self, cube: MemCube, keys: list[int], active: bool = True) -> dict[int, MemoryItem]:
        """The memories of `keys` still stored (and active, unless `active=False`)."""
        found = cube.store.by_keys(cube.id, keys)
        return {k: v for k, v in found.items() if not active or v.state is MemoryState.ACTIVE}

    def _record(self, cube: MemCube, key: int, move: dict[str, Any]) -> MemoryItem:
        """A version row for an executed move; the text and metadata stay as they are."""
        change = Change(VersionEvent.UPDATE, reason=history_reason(move), source=SOURCE)
        return cube.store.change(cube.id, key, change)

    def _repoint(
        self,
        cube: MemCube,
        tier: str,
        artifact: str,
        moved: dict[str, MemoryItem],
        built: dict[str, MemoryItem],
    ) -> None:
        """After recording moves, the artifact was built from the same text as the new
        versions: point its provenance at them, so it reads as current."""
        sources = [
            (s.memory_id, s.memory_version)
            for s in cube.store.artifacts(tier, cube.owner)
            if s.artifact == artifact
        ]
        updated = []
        for memory_id, version in sources:
            new, old = moved.get(memory_id), built.get(memory_id)
            same = new is not None and old is not None and new.memory == old.memory
            updated.append((memory_id, new.version if same and new is not None else version))
        if updated != sources:
            cube.store.record_artifact(tier, cube.owner, artifact, updated)

    # -- KV blocks --------------------------------------------------------------------

    def _own_blocks(self, cube: MemCube, memory_id: str) -> list[str]:
        """Keys of the owner's blocks built from this memory alone."""
        sources: dict[str, list[str]] = {}
        for s in cube.store.artifacts(ACTIVATION, cube.owner):
            sources.setdefault(s.artifact, []).append(s.memory_id)
        return sorted(k for k, ids in sources.items() if ids == [memory_id])

    def _drop_block(self, cube: MemCube, key: str) -> None:
        """Forget the owner's block; delete its files unless another owner holds the same
        block (keys hash tokens, so two owners' identical texts share one)."""
        cube.store.forget_artifact(ACTIVATION, cube.owner, key)
        if not any(s.artifact == key for s in cube.store.artifacts(ACTIVATION)):
            tier: ActivationTier = cube.tiers[ACTIVATION]  # type: ignore[assignment]
            tier.discard([key])

    def run_kv(self, job: Job) -> Result:
        cube = self._cube(job)
        if cube is None:
            return {"note": "the owner's memories were erased"}
        built = evicted = skipped = 0
        for move in _moves(job):
            evicting = move["action"] == "evict"  # an archived memory's block goes too
            for key, item in self._items(cube, move["keys"], active=not evicting).items():
                if evicting:
                    blocks = self._own_blocks(cube, item.id)
                    for block in blocks:
                        self._drop_block(cube, block)
                    if blocks:
                        self._record(cube, key, move)
                    evicted += len(blocks)
                elif self._build(cube, key, item, move):
                    built += 1
                else:
                    skipped += 1
        evicted += self._fit_budget(cube)
        return {"built": built, "evicted": evicted, "skipped": skipped}

    def _build(self, cube: MemCube, key: int, item: MemoryItem, move: dict[str, Any]) -> bool:
        tier: ActivationTier = cube.tiers[ACTIVATION]  # type: ignore[assignment]
        old = self._own_blocks(cube, item.id)
        since = text_history(item, cube.store.history(cube.id, key)).version
        current = {
            s.artifact
            for s in cube.store.artifacts(ACTIVATION, cube.owner, [item.id])
            if s.artifact in old and s.memory_version >= since
        }
        if current:
            return False  # built from its current text already (a job run twice)
        from engram.answer.routes.kv import memory_block

        config = self.memory.config
        built, _ = memory_block(tier, self.memory.answer_model(), item, config.kv.method)
        for block in old:
            if block != built:
                self._drop_block(cube, block)
        after = self._record(cube, key, move)
        self._repoint(cube, ACTIVATION, built, {item.id: after}, {item.id: item})
        return True

    def _fit_budget(self, cube: MemCube) -> int:
        """Blocks as built may be larger than planned: evict the coldest until the owner's
        scheduled blocks fit the budget again."""
        config = self.memory.config.scheduler
        usage = read_usage(cube, self.memory.lifecycle, config, datetime.now(UTC))
        total = sum(b.nbytes for b in usage.kv.values())
        heat = {u.id: (u.heat, u) for u in usage.memories}
        evicted = 0
        for block in sorted(usage.kv.values(), key=lambda b: heat.get(b.memory_id, (-1.0,))[0]):
            if total <= config.kv.budget_bytes:
                break
            self._drop_block(cube, block.key)
            total -= block.nbytes
            evicted += 1
            if block.memory_id in heat:
                why = f"the built blocks exceed the {config.kv.budget_bytes} byte budget; coldest"
                move = {"rule": "hot-to-kv", "action": "evict", "reason": why}
                self._record(cube, heat[block.memory_id][1].row.key, move)
        return evicted

    # -- adapter ----------------------------------------------------------------------

    def run_adapter(self, job: Job) -> Result:
        """Teach the owner's adapter the queued facts as one batch (with `lora.safeguards`)."""
        cube = self._cube(job)
        if cube is None:
            return {"note": "the owner's memories were erased"}
        tier: ParametricTier = cube.tiers[PARAMETRIC]  # type: ignore[assignment]
        learned = {mid for a in tier.held() for mid in a.memory_ids}
        todo: dict[str, tuple[int, MemoryItem, dict[str, Any]]] = {}
        for move in _moves(job):
            found = self._items(cube, move["keys"])
            facts = {f.memory_id for f in facts_of(list(found.values()))[0]}
            for key, item in found.items():
                if item.id not in learned and item.id in facts:
                    todo[item.id] = (key, item, move)
        if not todo:
            return {"note": "every queued fact was learned already, or is gone or no fact"}
        items = [item for _, item, _ in todo.values()]
        manifest = tier.build(items, settings=self.memory.config.lora)
        moved = {}
        for memory_id in manifest.memory_ids:
            if memory_id in todo:
                key, _, move = todo[memory_id]
                moved[memory_id] = self._record(cube, key, move)
        built = {mid: item for mid, (_, item, _) in todo.items()}
        self._repoint(cube, PARAMETRIC, f"v{manifest.version}", moved, built)
        return {"learned": len(moved), "version": manifest.version}

    # -- decay ------------------------------------------------------------------------

    def run_decay(self, job: Job) -> Result:
        """Archive through retention's own path (a 'delete' version with the reason);
        memories pinned or archived meanwhile are skipped."""
        cube = self._cube(job)
        if cube is None:
            return {"note": "the owner's memories were erased"}
        evict = {}
        for move in _moves(job):
            for key in self._items(cube, move["keys"]):
                evict[key] = history_reason(move)
        done = cube.store.apply_retention(cube.id, RetentionPlan(evict=evict), SOURCE)
        return {"archived": len(done.evict)}
