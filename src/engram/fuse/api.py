"""The fuse verb of `Memory`: `m.fuse_cube("user:bob", "user:alice")`. Mixed into Memory
so memory.py stays small; the CLI calls it, and AsyncMemory wraps it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engram.errors import NotFoundError, ValidationError
from engram.fuse.apply import FuseReport, apply_plan
from engram.fuse.plan import FUSE_THRESHOLD, Planner
from engram.scope import Scope

if TYPE_CHECKING:
    from engram.config import EngramConfig
    from engram.embed import Embedder
    from engram.extract.jobs import Extraction
    from engram.store.base import Store

def check_owner(value: object, what: str) -> str:
    """An owner as `owners()` names it: 'user:<id>' or 'agent:<id>'."""
    return Scope.parse(value, what)


def check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValidationError(f"threshold must be a cosine in (0, 1], got {value!r}")
    return float(value)


class FuseVerbs:
    """Memory's fuse verb (docs/bundles.md#fuse)."""

    if TYPE_CHECKING:
        config: EngramConfig
        store: Store
        embedder: Embedder
        extraction: Extraction

    def fuse_cube(
        self,
        source: str,
        into: str,
        *,
        dry_run: bool = False,
        threshold: float | None = None,
    ) -> FuseReport:
        """Merge the cube of owner `source` into the cube of `into` (both in this home):
        near-duplicates become one memory with both provenances in its history, conflicts
        new versions with the reason, the rest copies with provenance; `source` is left
        unchanged. `dry_run` lists the actions and writes nothing."""
        b_owner, a_owner = check_owner(source, "source"), check_owner(into, "into")
        if b_owner == a_owner:
            raise ValidationError(f"cannot fuse {b_owner} into itself")
        if not isinstance(dry_run, bool):
            raise ValidationError(f"dry_run must be true or false, got {dry_run!r}")
        cos = FUSE_THRESHOLD if threshold is None else check_threshold(threshold)
        cubes = []
        for owner in (b_owner, a_owner):
            cube = self.store.cube_id(owner)
            if cube is None:
                raise NotFoundError(f"no memories for {owner}")
            cubes.append(cube)
        extract = self.config.extract
        planner = Planner(
            self.store,
            (cubes[0], cubes[1]),
            (b_owner, a_owner),
            cos,
            self.extraction.llm() if self.config.llm.provider != "none" else None,
            extract.llm_neighbors,
            extract.answer_retries,
        )
        plan = planner.run()
        actions = plan.actions
        if not dry_run and any(a.action != "skip" for a in actions):
            actions = apply_plan(self.store, self.embedder.for_owner(a_owner), cubes[1], plan)
        return FuseReport(b_owner, a_owner, dry_run, cos, actions)
