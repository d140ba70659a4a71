"""The tiers of a MemCube behind one small interface.

Text, activation (KV blocks) and parametric (LoRA adapters) memory are each a `Tier` of
one owner's cube with the same four verbs: `held` (what it holds), `build` (from given
sources: text rows for the text tier, text memories for the derived tiers), `stats`, and
`forget` (erase what was built from given memory ids). The derived tiers record in the
store which memory ids and versions each artifact was built from, so `forget` and
`Memory.tiers(memory_id)` are one query. No tier imports the `Memory` facade, the server
or the CLI: the facade selects memories and calls tiers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
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
