"""The tiers of a MemCube behind one small interface.

Text, activation (KV blocks) and parametric (LoRA adapters) memory are each a `Tier` of
one owner's cube with the same four verbs: `held` (what it holds), `build` (from given
sources: text rows for the text tier, text memories for the derived tiers), `stats`, and
`forget` (erase what was built from given memory ids), and `export` / `load` (write what
the tier holds for the owner under a folder of a cube bundle, and take it back; see
engram.bundle). The derived tiers record in the
store which memory ids and versions each artifact was built from, so `forget` and
`Memory.tiers(memory_id)` are one query. No tier imports the `Memory` facade, the server
or the CLI: the facade selects memories and calls tiers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from engram.store.base import Store

S = TypeVar("S")  # what a tier builds from
R = TypeVar("R")  # what a build returns

TEXT = "text"
ACTIVATION = "activation"
PARAMETRIC = "parametric"


@dataclass(frozen=True)
class Artifact:
    """One thing a tier holds: a memory (text), a KV block, an adapter version."""

    tier: str
    owner: str
    key: str  # memory id, KV block key, or 'v<N>'
    memory_ids: tuple[str, ...]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Holding:
    """A tier holding a memory: in which artifact, built from which version of it."""

    tier: str
    key: str
    memory_version: int
    current: bool  # built from the memory's current version (False: rebuild to refresh)


def erased_meanwhile(store: Store, memory_ids: Sequence[str]) -> list[str]:
    """Those of `memory_ids` no longer stored: a derived tier checks this after recording
    a build, so a build racing an erasure never leaves an artifact of an erased memory."""
    return [mid for mid in memory_ids if store.locate(mid) is None]


class Tier(ABC, Generic[S, R]):
    """One tier of one owner's cube."""

    name: ClassVar[str]
    owner: str

    @abstractmethod
    def held(self) -> list[Artifact]:
        """What the tier holds for the owner."""

    @abstractmethod
    def build(self, sources: Sequence[S], **options: Any) -> R:
        """Add to the tier from `sources`."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counts and sizes of what the tier holds for the owner."""

    @abstractmethod
    def forget(self, memory_ids: Sequence[str]) -> list[str]:
        """Erase everything of the tier built from any of `memory_ids`; returns the keys
        of the artifacts removed."""

    @abstractmethod
    def export(self, dest: Path) -> list[Path]:
        """Write what the tier holds for the owner under `dest` (created); returns the
        files written."""

    @abstractmethod
    def load(self, src: Path, **options: Any) -> int:
        """Take back what `export` wrote under `src`; returns how many artifacts (memories,
        KV blocks, adapter versions) were added. What is held already, identical, is
        skipped; anything held with other content is refused before anything is written."""


def files_under(root: Path) -> list[Path]:
    """Every file under `root`, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def same_files(a: Path, b: Path) -> bool:
    """Whether two directories hold the same files with the same bytes."""
    mine, theirs = files_under(a), files_under(b)
    if [p.relative_to(a) for p in mine] != [p.relative_to(b) for p in theirs]:
        return False
    return all(x.read_bytes() == y.read_bytes() for x, y in zip(mine, theirs, strict=True))


def copy_dirs(pairs: Sequence[tuple[Path, Path]]) -> list[Path]:
    """Copy each (source, final) directory into place, all or none: a final directory held
    already with the same files is skipped, one with other files refuses the whole copy
    (before anything is written); the others are copied next to their final place, then
    renamed into it. Returns the directories placed."""
    from engram.bundle.errors import BundleConflictError

    todo = []
    for src, final in pairs:
        if final.exists():
            if not same_files(src, final):
                raise BundleConflictError(
                    f"{final} exists with other content than {src}; nothing was "
                    "written (an artifact is never overwritten)"
                )
        else:
            todo.append((src, final))
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for src, final in todo:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=final.parent))
            staged.append((tmp, final))
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        for tmp, final in staged:
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)
        for final in placed:
            shutil.rmtree(final, ignore_errors=True)
        raise
    return placed
