"""The tier verbs of `Memory`: `m.kv` (activation: KV blocks), `m.lora` (parametric: LoRA
adapters) and `m.tiers(memory_id)`. The facade validates and chooses memories; the cube's
tiers build, list and forget. Mixed into Memory so memory.py stays small; the CLI calls
these verbs, and AsyncMemory wraps them."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engram.errors import NotFoundError, ValidationError
from engram.scope import Scope
from engram.tiers import ACTIVATION, PARAMETRIC, TEXT, Holding, Tier

if TYPE_CHECKING:
    from engram.activation.block import KVBlock
    from engram.activation.store import KVEntry
    from engram.activation.tier import ActivationTier, KVHandle
    from engram.config import EngramConfig
    from engram.cube import MemCube
    from engram.memory import Memory
    from engram.parametric.examples import Fact
    from engram.parametric.registry import AdapterManifest
    from engram.parametric.tier import ParametricTier
    from engram.store.base import Store


@dataclass(frozen=True)
class LoRAAnswer:
    """A prompt continued by the owner's adapter and by the bare base model."""

    prompt: str
    version: int
    with_adapter: str
    without_adapter: str


def _cube(memory: Memory, user_id: str | None, agent_id: str | None) -> MemCube:
    scope = Scope.of(user_id, agent_id)
    cube = memory.cube(scope)
    if cube is None:
        raise NotFoundError(f"no memories for {scope.owner}")
    return cube


class KVVerbs:
    """`m.kv`: an owner's memories as stored KV blocks for a local model (activation.md)."""

    def __init__(self, memory: Memory):
        self.memory = memory

    def _tier(self, user_id: str | None, agent_id: str | None) -> ActivationTier:
        tier = _cube(self.memory, user_id, agent_id).tiers[ACTIVATION]
        return tier  # type: ignore[return-value]

    def build(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        ids: Sequence[str] | None = None,
        top: int | None = None,
        recent: int | None = None,
        method: str | None = None,
        model: str | None = None,
    ) -> KVEntry:
        """Build and store the KV block of the chosen memories (exactly one of `ids`, the
        `top` most-accessed, the `recent` newest); `method` defaults to `kv.method`,
        `model` (a checkpoint path) to `kv.model` (none: the packaged Engram LM)."""
        from engram.activation.compress import parse_method
        from engram.activation.memories import select_memories
        from engram.lm import load_model
        from engram.models.local import configured_checkpoint

        config = self.memory.config
        compressor = parse_method(method if method is not None else config.kv.method)
        lm, tokenizer = load_model(configured_checkpoint(model or config.kv.model, config))
        items = select_memories(
            self.memory, user_id=user_id, agent_id=agent_id, ids=ids, top=top, recent=recent
        )
        tier = self._tier(user_id, agent_id)
        return tier.build(items, model=lm, tokenizer=tokenizer, compressor=compressor)

    def ls(self, *, user_id: str | None = None, agent_id: str | None = None) -> list[KVEntry]:
        """Stored blocks: the owner's, or every block of the home when no owner is given."""
        entries = self.memory.kv_handle.store().entries()
        if user_id is None and agent_id is None:
            return entries
        owner = Scope.of(user_id, agent_id).owner
        return [e for e in entries if e.meta.get("owner") == owner]

    def get(self, key: str, *, fingerprint: str | None = None) -> KVBlock:
        """A stored block (checked against the model `fingerprint` when given)."""
        return self.memory.kv_handle.store().get(key, fingerprint)

    def rm(self, key: str) -> None:
        """Delete a stored block (NotFoundError when there is none) and its provenance."""
        self.memory.kv_handle.store().remove(key)
        for source in self.memory.store.artifacts(ACTIVATION):
            if source.artifact == key:
                self.memory.store.forget_artifact(ACTIVATION, source.owner, key)

    def stats(self) -> dict[str, Any]:
        """Entries, tokens, bytes and cache hits of the home's KV store."""
        return self.memory.kv_handle.store().stats()


class LoRAVerbs:
    """`m.lora`: LoRA adapters taught an owner's memories (parametric.md)."""

    def __init__(self, memory: Memory):
        self.memory = memory

    def _tier(self, user_id: str | None, agent_id: str | None) -> ParametricTier:
        return _cube(self.memory, user_id, agent_id).tiers[PARAMETRIC]  # type: ignore[return-value]

    def facts(
        self, *, user_id: str | None = None, agent_id: str | None = None
    ) -> tuple[list[Fact], int]:
        """The owner's active memories as facts, and how many were too short to be one."""
        from engram.parametric.tier import facts_of

        return facts_of(list(self.memory.iter_all(user_id=user_id, agent_id=agent_id)))

    def train(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        model: str | None = None,
        safeguards: Sequence[str] | None = None,
        epochs: int | None = None,
        fresh: bool = False,
    ) -> AdapterManifest:
        """Teach the owner's adapter its active memories it does not know yet; saves and
        returns a new version. `safeguards=[]` trains naive LoRA; None: `lora.safeguards`."""
        from engram.extras import require_extra

        require_extra("parametric", "m.lora")
        lora = self.memory.config.lora
        changes: dict[str, Any] = {}
        if model is not None:
            changes["base_model"] = model
        if safeguards is not None:
            changes["safeguards"] = list(safeguards)
        if epochs is not None:
            changes["epochs"] = epochs
        settings = lora.model_validate({**lora.model_dump(), **changes})
        items = list(self.memory.iter_all(user_id=user_id, agent_id=agent_id))
        if not items:
            owner = Scope.of(user_id, agent_id).owner
            raise ValidationError(f"{owner} has no memories the adapter has not learned yet")
        return self._tier(user_id, agent_id).build(items, settings=settings, fresh=fresh)

    def ls(
        self, *, user_id: str | None = None, agent_id: str | None = None
    ) -> list[AdapterManifest]:
        """Adapter versions of the owner (of every owner when none is given), oldest first."""
        from engram.parametric.cube import registry_for

        registry = registry_for(self.memory.config)
        if user_id is None and agent_id is None:
            owners = registry.owners()
        else:
            owners = [str(Scope.of(user_id, agent_id).owner)]
        return [m for owner in owners for m in registry.versions(owner)]

    def manifest(
        self, *, user_id: str | None = None, agent_id: str | None = None, version: int | None = None
    ) -> AdapterManifest:
        """One adapter version of the owner (the latest by default); NotFoundError if none."""
        from engram.parametric.cube import registry_for

        owner = str(Scope.of(user_id, agent_id).owner)
        registry = registry_for(self.memory.config)
        if not registry.versions(owner):
            raise NotFoundError(f"{owner} has no adapter yet: train one first")
        return registry.get(owner, version)

    def ask(
        self,
        prompt: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        model: str | None = None,
        version: int | None = None,
        max_tokens: int = 16,
    ) -> LoRAAnswer:
        """Greedy continuation of `prompt` with the owner's adapter and without it."""
        from engram.extras import require_extra

        require_extra("parametric", "m.lora")
        from engram.parametric.cube import load_base
        from engram.parametric.host import AdapterHost

        if not isinstance(prompt, str) or not prompt.strip():
            raise ValidationError("prompt must be non-empty text")
        manifest = self.manifest(user_id=user_id, agent_id=agent_id, version=version)
        config = self.memory.config
        host = AdapterHost(*load_base(model or config.lora.base_model, config))
        without = host.answer(prompt, None, max_tokens)
        with_adapter = host.answer(prompt, host.load(manifest), max_tokens)
        return LoRAAnswer(prompt, manifest.version, with_adapter, without)


class TierVerbs:
    """Memory's tier verbs and the derived tiers it gives each cube."""

    if TYPE_CHECKING:
        config: EngramConfig
        store: Store
        _lock: threading.Lock

        def _owned(self, memory_id: str, user_id: str | None, agent_id: str | None) -> MemCube: ...

    _kv_handle: KVHandle | None = None

    @property
    def kv_handle(self) -> KVHandle:
        """The home's KV store (shared by every owner), opened on first use."""
        from engram.activation.tier import KVHandle

        with self._lock:
            if self._kv_handle is None:
                self._kv_handle = KVHandle(self.config)
            return self._kv_handle

    @property
    def kv(self) -> KVVerbs:
        """Activation memory: `m.kv.build(user_id=..., top=20)`, `ls`, `get`, `rm`, `stats`."""
        return KVVerbs(self)  # type: ignore[arg-type]

    @property
    def lora(self) -> LoRAVerbs:
        """Parametric memory: `m.lora.train(user_id=...)`, `ls`, `ask`, `facts`."""
        return LoRAVerbs(self)  # type: ignore[arg-type]

    def _derived_tiers(self, owner: str) -> tuple[Tier[Any, Any], ...]:
        from engram.activation.tier import ActivationTier
        from engram.parametric.tier import ParametricTier

        return (
            ActivationTier(owner, self.store, self.kv_handle),
            ParametricTier(owner, self.store, self.config),
        )

    def tiers(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> list[Holding]:
        """Which tiers hold a memory: its text, and every KV block and adapter version
        built from it (`current` False when built from an older version of it)."""
        cube = self._owned(memory_id, user_id, agent_id)
        item = cube.get(memory_id)
        held = [Holding(TEXT, memory_id, item.version, True)]
        for source in self.store.artifacts(owner=cube.owner, memory_ids=[memory_id]):
            current = source.memory_version == item.version
            held.append(Holding(source.tier, source.artifact, source.memory_version, current))
        return held
