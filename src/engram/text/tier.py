"""The text tier of a cube: its memories themselves (rows, versions, index, vectors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engram.store.base import MemoryFilter, NewMemory
from engram.tiers import TEXT, Artifact, Tier
from engram.types import MemoryItem, MemoryState

if TYPE_CHECKING:
    from engram.cube import MemCube

_EVERY_STATE = MemoryFilter(states=(MemoryState.ACTIVE, MemoryState.ARCHIVED))


class TextTier(Tier[NewMemory, list[MemoryItem]]):
    """The plaintext memories of one cube; the source every other tier is built from."""

    name = TEXT

    def __init__(self, cube: MemCube):
        self.cube = cube
        self.owner = cube.owner

    def held(self) -> list[Artifact]:
        return [
            Artifact(TEXT, self.owner, item.id, (item.id,), {"version": item.version})
            for item in self.cube.iter_all(_EVERY_STATE)
        ]

    def build(self, sources: Sequence[NewMemory], **options: Any) -> list[MemoryItem]:
        return self.cube.add(list(sources))

    def stats(self) -> dict[str, Any]:
        return self.cube.stats().model_dump(mode="json")

    def forget(self, memory_ids: Sequence[str]) -> list[str]:
        """Erase the memories (rows, versions, FTS entries, vectors) of this cube."""
        located = [(mid, self.cube.store.locate(mid)) for mid in memory_ids]
        mine = [(mid, f.key) for mid, f in located if f is not None and f.cube == self.cube.id]
        self.cube.erase_keys([key for _, key in mine])
        return [mid for mid, _ in mine]
