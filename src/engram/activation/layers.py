"""How one transformer layer's keys and values are held: dense, or KIVI-quantized.

Every form keeps `positions` ([kv_heads, tokens], int32): the prompt position each kept
entry came from, so an evicted cache still knows where it sits in the sequence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from engram.activation.quant import QTensor, dequantize, hadamard

Tensors = dict[str, torch.Tensor]


def _nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class StoredLayer(ABC):
    """One layer's cache as stored; `dense()` gives [kv_heads, tokens, head_dim] tensors."""

    positions: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.positions.shape[-1])

    @property
    @abstractmethod
    def head_dim(self) -> int: ...

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of keys and values as stored (positions not counted: they are bookkeeping)."""

    @abstractmethod
    def dense(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]: ...

    @abstractmethod
    def tensors(self, prefix: str) -> Tensors: ...

    @abstractmethod
    def meta(self) -> dict[str, Any]: ...


@dataclass
class DenseLayer(StoredLayer):
    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor

    @property
    def head_dim(self) -> int:
        return int(self.keys.shape[-1])

    @property
    def nbytes(self) -> int:
        return _nbytes(self.keys, self.values)

    def dense(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys.to(dtype), self.values.to(dtype)

    def tensors(self, prefix: str) -> Tensors:
        return {
            f"{prefix}.k": self.keys,
            f"{prefix}.v": self.values,
            f"{prefix}.pos": self.positions,
        }

    def meta(self) -> dict[str, Any]:
        return {"kind": "dense"}

    @classmethod
    def from_tensors(cls, prefix: str, tensors: Tensors) -> DenseLayer:
        return cls(tensors[f"{prefix}.k"], tensors[f"{prefix}.v"], tensors[f"{prefix}.pos"])

    def take(self, index: torch.Tensor) -> DenseLayer:
        """Keep entries `index` ([kv_heads, kept], sorted) of every head."""
        gather = index.unsqueeze(-1).expand(-1, -1, self.keys.shape[-1])
        return DenseLayer(
            self.keys.gather(1, gather),
            self.values.gather(1, gather),
            self.positions.gather(1, index),
        )


@dataclass
class QuantizedLayer(StoredLayer):
    """KIVI: full-precision sinks | quantized middle | full-precision recent residual."""

    sinks: DenseLayer
    qkeys: QTensor
    qvalues: QTensor
    residual: DenseLayer
    rotated: bool
    positions: torch.Tensor

    @property
    def head_dim(self) -> int:
        return self.qkeys.shape[-1]

    @property
    def nbytes(self) -> int:
        return self.sinks.nbytes + self.qkeys.nbytes + self.qvalues.nbytes + self.residual.nbytes

    def dense(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        keys = dequantize(self.qkeys)
        if self.rotated:  # stored as keys @ H (H orthonormal): undo with H^T
            keys = keys @ hadamard(keys.shape[-1]).T
        values = dequantize(self.qvalues)
        k = torch.cat([self.sinks.keys.float(), keys, self.residual.keys.float()], dim=1)
        v = torch.cat([self.sinks.values.float(), values, self.residual.values.float()], dim=1)
        return k.to(dtype), v.to(dtype)

    def tensors(self, prefix: str) -> Tensors:
        out: Tensors = {f"{prefix}.pos": self.positions}
        out |= self.sinks.tensors(f"{prefix}.sink") | self.residual.tensors(f"{prefix}.res")
        for name, q in (("qk", self.qkeys), ("qv", self.qvalues)):
            out[f"{prefix}.{name}.packed"] = q.packed
            out[f"{prefix}.{name}.scale"] = q.scale
            out[f"{prefix}.{name}.min"] = q.minimum
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "kind": "kivi",
            "bits": self.qkeys.bits,
            "group": [self.qkeys.group, self.qvalues.group],
            "qk_shape": list(self.qkeys.shape),
            "qv_shape": list(self.qvalues.shape),
            "rotated": self.rotated,
        }

    @classmethod
    def from_tensors(cls, prefix: str, tensors: Tensors, meta: dict[str, Any]) -> QuantizedLayer:
        def part(name: str) -> DenseLayer:
            return DenseLayer.from_tensors(f"{prefix}.{name}", tensors)

        def qtensor(name: str, shape: list[int], group: int, axis: str) -> QTensor:
            return QTensor(
                packed=tensors[f"{prefix}.{name}.packed"],
                scale=tensors[f"{prefix}.{name}.scale"],
                minimum=tensors[f"{prefix}.{name}.min"],
                shape=(shape[0], shape[1], shape[2]),
                bits=int(meta["bits"]),
                group=group,
                axis=axis,  # type: ignore[arg-type]
            )

        kgroup, vgroup = meta["group"]
        return cls(
            sinks=part("sink"),
            qkeys=qtensor("qk", meta["qk_shape"], kgroup, "channel"),
            qvalues=qtensor("qv", meta["qv_shape"], vgroup, "token"),
            residual=part("res"),
            rotated=bool(meta["rotated"]),
            positions=tensors[f"{prefix}.pos"],
        )


def layer_from_tensors(prefix: str, tensors: Tensors, meta: dict[str, Any]) -> StoredLayer:
    kind = meta.get("kind")
    if kind == "dense":
        return DenseLayer.from_tensors(prefix, tensors)
    if kind == "kivi":
        return QuantizedLayer.from_tensors(prefix, tensors, meta)
    raise KeyError(f"unknown layer kind {kind!r}")
