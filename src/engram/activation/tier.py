"""The activation tier of a cube: its memories as stored KV blocks under `$ENGRAM_HOME/kv/`.

The KV store is shared by every owner of a home (a block's key is a hash of its tokens);
torch loads only when a block is built or read, never to forget one."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram.errors import NotFoundError
from engram.store.base import Store
from engram.tiers import ACTIVATION, Artifact, Tier, copy_dirs, erased_meanwhile, files_under
from engram.types import MemoryItem

if TYPE_CHECKING:
    from engram.activation.block import KVBlock
    from engram.activation.compress.base import Compressor
    from engram.activation.store import KVEntry, KVStore
    from engram.config import EngramConfig


def block_dir(artifacts: Path, key: str) -> Path:
    """Where a KV block lives under an artifacts directory (one directory per block key)."""
    return Path(artifacts) / "kv" / key


class KVHandle:
    """A home's KV store, opened (with torch) on first use; removal works without it."""

    def __init__(self, config: EngramConfig):
        self.config = config
        self.root = block_dir(config.artifacts, "")
        self._store: KVStore | None = None
        self._lock = threading.Lock()

    def store(self) -> KVStore:
        with self._lock:
            if self._store is None:
                from engram.activation.memories import kv_store

                self._store = kv_store(self.config)
            return self._store

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Every block's manifest by key, read as plain JSON (unreadable ones skipped)."""
        found: dict[str, dict[str, Any]] = {}
        if not self.root.is_dir():
            return found
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                data = json.loads((path / "manifest.json").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                found[path.name] = data
        return found

    def remove(self, key: str) -> None:
        """Delete a block from disk and from the RAM tier."""
        if self._store is not None:
            self._store.remove(key)
        else:
            shutil.rmtree(self.root / key)


class ActivationTier(Tier[MemoryItem, "KVEntry"]):
    """One owner's KV blocks; each build is recorded with the memory versions it used."""

    name = ACTIVATION

    def __init__(self, owner: str, store: Store, kv: KVHandle):
        self.owner = owner
        self.store = store
        self.kv = kv

    def held(self) -> list[Artifact]:
        return [
            Artifact(
                ACTIVATION,
                self.owner,
                key,
                tuple(m.get("meta", {}).get("memory_ids", [])),
                {
                    "tokens": m.get("n_tokens"),
                    "bytes": m.get("nbytes"),
                    "method": "+".join(s.get("name", "") for s in m.get("method", [])),
                },
            )
            for key, m in self.kv.manifests().items()
            if m.get("meta", {}).get("owner") == self.owner
        ]

    def build(
        self,
        sources: Sequence[MemoryItem],
        *,
        model: Any = None,
        tokenizer: Any = None,
        compressor: Compressor | None = None,
        fingerprint: str | None = None,
        **options: Any,
    ) -> KVEntry:
        """Build, store and record the KV block of `sources` (in that order)."""
        from engram.activation.memories import build_block
        from engram.activation.store import KVEntry

        block = build_block(sources, model, tokenizer, compressor, fingerprint)
        key = self.keep(block, [(item.id, item.version) for item in sources])
        return KVEntry.of(key, block)

    def keep(
        self, block: KVBlock, sources: Sequence[tuple[str, int]], key: str | None = None
    ) -> str:
        """Store a built block (under `key`, default its prefix key) and record it as built
        from `sources` (memory id, version); returns its key. A source erased meanwhile takes
        the block with it (NotFoundError), so a build racing an erasure never leaves an
        artifact of an erased memory."""
        key = self.kv.store().put(block, key)
        self.store.record_artifact(ACTIVATION, self.owner, key, list(sources))
        gone = erased_meanwhile(self.store, [memory_id for memory_id, _ in sources])
        if gone:
            self.forget(gone)
            raise NotFoundError(f"memories {gone} were erased while their KV block was built")
        return key

    def segment(
        self,
        model: Any,
        head: KVBlock,
        segment_ids: Sequence[int],
        source: tuple[str, int],
        compressor: Compressor | None = None,
        meta: dict[str, Any] | None = None,
    ) -> tuple[KVBlock, str, bool]:
        """The block of one memory's prompt line computed after `head` (composable,
        engram.activation.compose): stored, or built, compressed by `compressor` unless it
        evicts (a composed block needs every token), stored and recorded as built from
        `source` (memory id, version). Returns it, its key and whether it was built now."""
        from engram.activation.compose import build_segment, composable

        store = self.kv.store()
        compressor = composable(compressor)
        method = compressor.spec() if compressor is not None else []
        key = store.key_for(
            head.model_fingerprint, method, segment_ids, after=head.token_ids, scope=self.owner
        )
        found = store.find(key, head.model_fingerprint, head.tokenizer_hash)
        if found is not None:
            return found, key, False
        info = {"owner": self.owner, "memory_ids": [source[0]], "part": "segment", **(meta or {})}
        block = build_segment(model, head, segment_ids, info)
        if compressor is not None:
            block = compressor.compress(block, None)
        return block, self.keep(block, [source], key), True

    def stats(self) -> dict[str, Any]:
        held = self.held()
        return {
            "blocks": len(held),
            "tokens": sum(int(a.detail["tokens"] or 0) for a in held),
            "bytes": sum(int(a.detail["bytes"] or 0) for a in held),
        }

    def forget(self, memory_ids: Sequence[str]) -> list[str]:
        """Delete every block built from any of `memory_ids`: those the store recorded and
        any other whose manifest names one (e.g. built before provenance was recorded)."""
        wanted = set(memory_ids)
        keys = {a.artifact for a in self.store.artifacts(ACTIVATION, memory_ids=list(wanted))}
        for key, manifest in self.kv.manifests().items():
            if wanted & set(manifest.get("meta", {}).get("memory_ids", [])):
                keys.add(key)
        for key in sorted(keys):
            if (self.kv.root / key).is_dir():
                self.kv.remove(key)
        recorded = {(a.owner, a.artifact) for a in self.store.artifacts(ACTIVATION)}
        for owner, key in sorted(recorded):
            if key in keys:  # a block's key hashes its tokens: owners may share one
                self.store.forget_artifact(ACTIVATION, owner, key)
        return sorted(keys)

    # -- bundles ----------------------------------------------------------------------

    def export(self, dest: Path) -> list[Path]:
        """A copy of each of the owner's block directories, `dest/<key>/` (their provenance
        travels with the text tier's rows)."""
        dest.mkdir(parents=True, exist_ok=True)
        for artifact in self.held():
            shutil.copytree(self.kv.root / artifact.key, dest / artifact.key)
        return files_under(dest)

    def load(self, src: Path, **options: Any) -> int:
        """Place the blocks under `src` (only those named in `keys=` when given) into the
        home's KV store; returns how many were added."""
        keys: Collection[str] | None = options.get("keys")
        found = sorted(p for p in src.iterdir() if p.is_dir()) if src.is_dir() else []
        chosen = [p for p in found if keys is None or p.name in keys]
        return len(copy_dirs([(p, self.kv.root / p.name) for p in chosen]))

    def discard(self, keys: Collection[str]) -> None:
        """Delete blocks from disk (an import undoing what it placed)."""
        for key in keys:
            if (self.kv.root / key).is_dir():
                self.kv.remove(key)
