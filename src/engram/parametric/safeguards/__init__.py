"""Continual-learning safeguards: one class per file, one registry, composed in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engram.errors import ValidationError
from engram.parametric.safeguards.base import BatchRun, ComposedSafeguard, Safeguard
from engram.parametric.safeguards.distill import GeneralDistillation
from engram.parametric.safeguards.ema import EMABalance
from engram.parametric.safeguards.general import GeneralReplay
from engram.parametric.safeguards.lr_schedule import LRRewarm
from engram.parametric.safeguards.olora import OrthogonalLoRA
from engram.parametric.safeguards.osf import OrthogonalSubspace
from engram.parametric.safeguards.replay import MemoryReplay
from engram.parametric.safeguards.spaced import SpacedReplay

SAFEGUARDS: dict[str, type[Safeguard]] = {
    cls.name: cls
    for cls in (
        MemoryReplay,
        GeneralReplay,
        GeneralDistillation,
        OrthogonalLoRA,
        OrthogonalSubspace,
        EMABalance,
        LRRewarm,
        SpacedReplay,
    )
}


def build_safeguards(
    names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Safeguard]:
    """Instances of the registered safeguards `names`, with optional per-name kwargs."""
    options = options or {}
    unknown = [n for n in [*names, *options] if n not in SAFEGUARDS]
    if unknown:
        raise ValidationError(
            f"unknown safeguard(s) {unknown}; registered: {', '.join(sorted(SAFEGUARDS))}"
        )
    try:
        return [SAFEGUARDS[n](**dict(options.get(n, {}))) for n in names]
    except TypeError as err:
        raise ValidationError(f"bad safeguard options: {err}") from err


__all__ = [
    "SAFEGUARDS",
    "BatchRun",
    "ComposedSafeguard",
    "EMABalance",
    "GeneralDistillation",
    "GeneralReplay",
    "LRRewarm",
    "MemoryReplay",
    "OrthogonalLoRA",
    "OrthogonalSubspace",
    "Safeguard",
    "SpacedReplay",
    "build_safeguards",
]
