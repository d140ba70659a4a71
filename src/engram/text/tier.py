"""The text tier of a cube: its memories themselves (rows, versions, index, vectors)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram.errors import NotFoundError, StoreError
from engram.store.base import MemoryFilter, NewMemory, Store
from engram.tiers import TEXT, Artifact, Tier
from engram.types import MemoryItem, MemoryState

if TYPE_CHECKING:
    from engram.bundle.merge import OwnerMerge
    from engram.cube import MemCube
    from engram.store.migrate import OwnerDump, StoreWriter

_EVERY_STATE = MemoryFilter(states=(MemoryState.ACTIVE, MemoryState.ARCHIVED))


def store_transfer(store: Store) -> StoreWriter:
    """Whole-owner reads and writes (engram.store.migrate) of the database `store` opened."""
    from engram.store.migrate import open_writer

    url = getattr(store, "url", None)
    if url is None and getattr(store, "path", None) is not None:
        url = f"sqlite:///{store.path}"  # type: ignore[attr-defined]
    if not isinstance(url, str):
        raise StoreError(f"{type(store).__name__} cannot copy whole owners (no database URL)")
    return open_writer(url)


class TextTier(Tier[NewMemory, list[MemoryItem]]):
    """The plaintext memories of one cube; the source every other tier is built from.
    Without a cube (an owner with no memories yet) it can only `load` and `export`."""

    name = TEXT

    def __init__(self, cube: MemCube | None, *, owner: str = "", store: Store | None = None):
        self._cube = cube
        self.owner = cube.owner if cube is not None else owner
        store = cube.store if cube is not None else store
        if store is None or not self.owner:
            raise ValueError("a text tier needs a cube, or an owner and a store")
        self.store = store

    @property
    def cube(self) -> MemCube:
        if self._cube is None:
            raise NotFoundError(f"no memories for {self.owner}")
        return self._cube

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

    # -- bundles ----------------------------------------------------------------------

    def dump(self) -> OwnerDump | None:
        """Every table's rows of the owner (read in one transaction); None if it has none."""
        transfer = store_transfer(self.store)
        try:
            if self.owner not in transfer.owners():
                return None
            return transfer.dump(self.owner)
        finally:
            transfer.close()

    def export(self, dest: Path) -> list[Path]:
        """The owner's rows of every table as JSON lines (engram.bundle.tables)."""
        from engram.bundle.tables import write_tables
        from engram.store.migrate import OwnerDump

        return write_tables(self.dump() or OwnerDump(self.owner), dest)

    def load(self, src: Path, **options: Any) -> int:
        """Write the owner's rows that `export` wrote under `src` (or `dump=`, the same rows
        prepared by the caller, e.g. re-embedded). Returns the memories added or updated;
        `merge` says what else."""
        merge = self.merge(options.get("dump") or _read_tables(src, self.owner))
        return len(merge.new.tables["memories"]) + len(merge.changed)

    def merge(self, dump: OwnerDump) -> OwnerMerge:
        """Add `dump`'s rows to the owner: all of them when this store lacks it, else what
        they add to it (engram.bundle.merge: a union that never deletes; version chains
        that went apart are refused), planned, written and read back in one transaction."""
        transfer = store_transfer(self.store)
        try:
            return transfer.merge(dump)
        finally:
            transfer.close()


def _read_tables(src: Path, owner: str) -> OwnerDump:
    from engram.bundle.tables import read_tables

    return read_tables(src, owner)
