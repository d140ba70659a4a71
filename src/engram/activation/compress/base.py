"""The one base every KV compression method derives from, and the eviction base.

A method is a small dataclass overriding one hook (`apply`, or `score` for evictors).
Methods compose by wrapping: `KIVI(bits=2, inner=SnapKV(keep=0.5))` evicts, then
quantizes what is left.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import torch

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.layers import DenseLayer, StoredLayer
from engram.errors import ValidationError


@dataclass
class Compressor(ABC):
    """Turns a KVBlock into a smaller one. `inner` runs first."""

    name: ClassVar[str]
    inner: Compressor | None = field(default=None, kw_only=True)

    def observe(self) -> int:
        """Observation-window queries this method (not its inner) needs at build time."""
        return 0

    def observation_window(self) -> int:
        inner = self.inner.observation_window() if self.inner else 0
        return max(self.observe(), inner)

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "inner"}

    def spec(self) -> list[dict[str, Any]]:
        """The chain, innermost first, as recorded in a manifest."""
        head = self.inner.spec() if self.inner else []
        return [*head, {"name": self.name, **self.params()}]

    def compress(self, block: KVBlock, observation: Observation | None) -> KVBlock:
        if self.inner is not None:
            block = self.inner.compress(block, observation)
        out = self.apply(block, observation)
        return replace(out, method=self.spec())

    @abstractmethod
    def apply(self, block: KVBlock, observation: Observation | None) -> KVBlock: ...

    @staticmethod
    def dense(layer: StoredLayer, name: str) -> DenseLayer:
        if not isinstance(layer, DenseLayer):
            raise ValidationError(
                f"{name} needs dense keys and values: put quantization outermost "
                f"(e.g. 'snapkv+kivi', not 'kivi+snapkv')"
            )
        return layer


FORCED = 1e9  # a score that always wins top-k (sinks, observation window)


@dataclass
class Evictor(Compressor):
    """Keeps `keep` of each layer's entries, per KV head, by a score (kvpress ScorerPress)."""

    keep: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ValidationError(f"{self.name}: keep must be in (0, 1], got {self.keep}")

    @abstractmethod
    def score(
        self, index: int, layer: DenseLayer, block: KVBlock, observation: Observation | None
    ) -> torch.Tensor:
        """[kv_heads, kept] importance of each entry; the highest survive."""

    def budget(self, layer: DenseLayer, block: KVBlock) -> int:
        return max(1, min(layer.tokens, round(self.keep * block.n_tokens)))

    def apply(self, block: KVBlock, observation: Observation | None) -> KVBlock:
        layers: list[StoredLayer] = []
        for i, stored in enumerate(block.layers):
            layer = self.dense(stored, self.name)
            count = self.budget(layer, block)
            scores = self.score(i, layer, block, observation)
            layers.append(layer.take(top_sorted(scores, count)))
        return replace(block, layers=layers)

    def need(self, observation: Observation | None) -> Observation:
        if observation is None:
            raise ValidationError(f"{self.name} needs the observation window: build with it")
        return observation


def top_sorted(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` best entries per row, in their original order."""
    return scores.topk(count, dim=-1).indices.sort(dim=-1).values


def forced(layer: DenseLayer, first: int, last_from: int) -> torch.Tensor:
    """FORCED for entries from prompt positions < first or >= last_from, else 0."""
    pos = layer.positions
    return ((pos < first) | (pos >= last_from)).float() * FORCED
