"""The parametric tier of a cube: LoRA adapter versions taught its memories, under
`$ENGRAM_HOME/lora/<owner>/v<N>/`.

Forgetting a memory deletes every adapter version that learned it (see
docs/parametric.md#erasure): its weights cannot be trusted not to recall it, and
retraining inside an erasure would make `delete` depend on torch and take minutes. The
next `train` continues from the newest version left, which never saw the memory, or
starts afresh. Torch loads only to teach, never to forget."""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from engram.errors import NotFoundError, ValidationError
from engram.store.base import Store
from engram.tiers import PARAMETRIC, Artifact, Tier, copy_dirs, erased_meanwhile, files_under
from engram.types import MemoryItem

if TYPE_CHECKING:
    from engram.config import EngramConfig, LoRAConfig
    from engram.parametric.examples import Fact
    from engram.parametric.registry import AdapterManifest


def facts_of(items: Sequence[MemoryItem]) -> tuple[list[Fact], int]:
    """The memories that make a fact, and how many were too short to be one."""
    from engram.parametric.examples import fact_from_memory

    facts, skipped = [], 0
    for item in items:
        try:
            facts.append(fact_from_memory(item))
        except ValidationError:
            skipped += 1
    return facts, skipped


def adapter_dir(artifacts: Path, owner: str, version: str = "") -> Path:
    """Where an owner's adapter versions live under an artifacts directory (`v<N>/` each)."""
    folder = Path(artifacts) / "lora" / quote(owner, safe="")
    return folder / version if version else folder


class ParametricTier(Tier[MemoryItem, "AdapterManifest"]):
    """One owner's adapter versions; each is recorded with the memory versions it learned."""

    name = PARAMETRIC

    def __init__(self, owner: str, store: Store, config: EngramConfig):
        self.owner = owner
        self.store = store
        self.config = config
        self.root = Path(config.artifacts) / "lora"

    @property
    def folder(self) -> Path:
        return adapter_dir(self.config.artifacts, self.owner)

    def _versions(self) -> dict[str, tuple[Path, dict[str, Any]]]:
        """'v<N>' -> (directory, manifest as plain JSON), without loading torch."""
        folder = self.folder
        found: dict[str, tuple[Path, dict[str, Any]]] = {}
        if not folder.is_dir():
            return found
        for path in folder.iterdir():
            if not (path.is_dir() and path.name.startswith("v") and path.name[1:].isdigit()):
                continue
            try:
                data = json.loads((path / "manifest.json").read_text())
            except (OSError, ValueError):
                data = {}
            found[path.name] = (path, data if isinstance(data, dict) else {})
        return dict(sorted(found.items(), key=lambda kv: int(kv[0][1:])))

    def held(self) -> list[Artifact]:
        return [
            Artifact(
                PARAMETRIC,
                self.owner,
                name,
                tuple(m.get("memory_ids", [])),
                {"method": m.get("method"), "bytes": m.get("bytes"), "path": str(path)},
            )
            for name, (path, m) in self._versions().items()
        ]

    def build(
        self,
        sources: Sequence[MemoryItem],
        *,
        settings: LoRAConfig | None = None,
        fresh: bool = False,
        model: Any = None,
        tokenizer: Any = None,
        general_texts: Sequence[str] = (),
        **options: Any,
    ) -> AdapterManifest:
        """Teach the adapter the memories among `sources` it does not know yet (continuing
        the latest version unless `fresh`); save and record a new version."""
        from engram.parametric.cube import teach

        facts, _ = facts_of(sources)
        manifest = teach(
            self.config,
            self.owner,
            facts,
            model=model,
            tokenizer=tokenizer,
            settings=settings,
            general_texts=general_texts,
            fresh=fresh,
            options=options.get("safeguard_options"),
        )
        versions = {item.id: item.version for item in sources}
        self.store.record_artifact(
            PARAMETRIC,
            self.owner,
            f"v{manifest.version}",
            [(mid, versions.get(mid, 0)) for mid in manifest.memory_ids],
        )
        gone = erased_meanwhile(self.store, manifest.memory_ids)
        if gone:
            self.forget(gone)
            raise NotFoundError(f"memories {gone} were erased while the adapter learned them")
        return manifest

    def stats(self) -> dict[str, Any]:
        held = self.held()
        return {
            "versions": len(held),
            "memories": len({mid for a in held for mid in a.memory_ids}),
            "bytes": sum(int(a.detail["bytes"] or 0) for a in held),
        }

    def forget(self, memory_ids: Sequence[str]) -> list[str]:
        """Delete every version that learned any of `memory_ids` (recorded in the store, or
        named by its manifest); the versions left never saw them."""
        wanted = set(memory_ids)
        recorded = self.store.artifacts(PARAMETRIC, self.owner, list(wanted))
        names = {a.artifact for a in recorded}
        versions = self._versions()
        for name, (_, manifest) in versions.items():
            if wanted & set(manifest.get("memory_ids", [])):
                names.add(name)
        for name in sorted(names):
            if name in versions:
                shutil.rmtree(versions[name][0])
            self.store.forget_artifact(PARAMETRIC, self.owner, name)
        return sorted(names)

    # -- bundles ----------------------------------------------------------------------

    def export(self, dest: Path) -> list[Path]:
        """A copy of each adapter version of the owner (weights, peft config, manifest),
        `dest/v<N>/`."""
        dest.mkdir(parents=True, exist_ok=True)
        for name, (path, _) in self._versions().items():
            shutil.copytree(path, dest / name)
        return files_under(dest)

    def load(self, src: Path, **options: Any) -> int:
        """Place the adapter versions under `src` (only those named in `versions=` when
        given) as the owner's; returns how many were added."""
        wanted: Collection[str] | None = options.get("versions")
        found = sorted(p for p in src.iterdir() if p.is_dir()) if src.is_dir() else []
        chosen = [p for p in found if wanted is None or p.name in wanted]
        return len(copy_dirs([(p, self.folder / p.name) for p in chosen]))

    def discard(self, names: Collection[str]) -> None:
        """Delete adapter versions from disk (an import undoing what it placed)."""
        for name in names:
            shutil.rmtree(self.folder / name, ignore_errors=True)
