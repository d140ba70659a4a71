"""The bundle verbs of `Memory`: `m.export_cube(path, user_id=...)` and
`m.import_cube(path)`. Mixed into Memory so memory.py stays small; the CLI calls these
verbs, and AsyncMemory wraps them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram.bundle.manifest import BundleReport
from engram.errors import NotFoundError, ValidationError
from engram.scope import Scope

if TYPE_CHECKING:
    from engram.config import EngramConfig
    from engram.cube import MemCube
    from engram.embed import Embedder
    from engram.store.base import Store
    from engram.tiers import Tier


def _path(path: str | Path) -> Path:
    if not isinstance(path, str | Path) or not str(path):
        raise ValidationError("path must be a file system path")
    return Path(path).expanduser()


def _recorded(store: Store, embedder: Embedder) -> tuple[str, int]:
    """The embedder the store's vectors are of (recorded in it; else the configured one,
    which the store records on its first write), without loading the model when recorded."""
    from engram.text.tier import store_transfer

    transfer = store_transfer(store)
    try:
        recorded = transfer.embedder()
    finally:
        transfer.close()
    return recorded if recorded is not None else (embedder.name, embedder.dim)


class BundleVerbs:
    """Memory's cube bundle verbs (docs/bundles.md)."""

    if TYPE_CHECKING:
        config: EngramConfig
        store: Store
        embedder: Embedder
        _lock: threading.Lock

        def cube(self, scope: Scope, create: bool = False) -> MemCube | None: ...

        def _derived_tiers(self, owner: str) -> tuple[Tier[Any, Any], ...]: ...

    def export_cube(
        self,
        path: str | Path,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        tar: bool | None = None,
    ) -> BundleReport:
        """Write one owner's cube (memories with their histories, retention state,
        feedback, policies, jobs; KV blocks; adapter versions) as a bundle at `path`, a new
        directory, or a tar when `tar` (default: when `path` ends in .tar)."""
        from engram.bundle.export import export_bundle

        scope = Scope.of(user_id, agent_id)
        cube = self.cube(scope)
        if cube is None:
            raise NotFoundError(f"no memories for {scope.owner}")
        target = _path(path)
        as_tar = target.suffix == ".tar" if tar is None else tar
        return export_bundle(cube, _recorded(self.store, self.embedder), target, as_tar)

    def import_cube(self, path: str | Path) -> BundleReport:
        """Import a bundle (directory or tar) as its owner's cube, after verifying every
        file; an owner held already is skipped when identical, refused otherwise."""
        from engram.bundle.load import import_bundle

        return import_bundle(
            _path(path),
            config=self.config,
            store=self.store,
            embedder=self.embedder,
            vectors=_recorded(self.store, self.embedder),
            derived=self._derived_tiers,
        )
