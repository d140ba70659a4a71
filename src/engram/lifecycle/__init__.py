"""Retention: memories decay along a forgetting curve, grow stronger when recalled (more
when nearly forgotten), live first in a per-session working buffer, are consolidated into
long-term memory when they recur, and are archived (never silently deleted) by expiry,
TTL, forgetting or capacity budgets. See docs/lifecycle.md.

Names load on first use (PEP 562), so `engram --help` does not import numpy; the decay
laws and replacement policies register when `decay` or `replacement` is first imported."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engram.lifecycle.core import Lifecycle
    from engram.lifecycle.decay import DECAY_LAWS, DecayLaw, build_decay_law, register_decay_law
    from engram.lifecycle.exponential import ExponentialDecay
    from engram.lifecycle.fifo import FIFOReplacement
    from engram.lifecycle.hyperbolic import HyperbolicDecay
    from engram.lifecycle.lru import LRUReplacement
    from engram.lifecycle.power import PowerDecay
    from engram.lifecycle.replacement import (
        REPLACEMENT_POLICIES,
        ReplacementPolicy,
        build_replacement,
        register_replacement,
    )
    from engram.lifecycle.report import GcAction, GcDecision, GcReport, RetentionInfo, Tier


_WHERE = {
    "Lifecycle": "core",
    **dict.fromkeys(("DECAY_LAWS", "DecayLaw", "build_decay_law", "register_decay_law"), "decay"),
    "ExponentialDecay": "exponential",
    "FIFOReplacement": "fifo",
    "HyperbolicDecay": "hyperbolic",
    "LRUReplacement": "lru",
    "PowerDecay": "power",
    **dict.fromkeys(
        ("REPLACEMENT_POLICIES", "ReplacementPolicy", "build_replacement", "register_replacement"),
        "replacement",
    ),
    **dict.fromkeys(("GcAction", "GcDecision", "GcReport", "RetentionInfo", "Tier"), "report"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engram.lifecycle' has no attribute {name!r}")
    return getattr(importlib.import_module(f"engram.lifecycle.{_WHERE[name]}"), name)


__all__ = [
    "DECAY_LAWS",
    "REPLACEMENT_POLICIES",
    "DecayLaw",
    "ExponentialDecay",
    "FIFOReplacement",
    "GcAction",
    "GcDecision",
    "GcReport",
    "HyperbolicDecay",
    "LRUReplacement",
    "Lifecycle",
    "PowerDecay",
    "ReplacementPolicy",
    "RetentionInfo",
    "Tier",
    "build_decay_law",
    "build_replacement",
    "register_decay_law",
    "register_replacement",
]
