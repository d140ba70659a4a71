"""Retention: memories decay along a forgetting curve, grow stronger when recalled (more
when nearly forgotten), live first in a per-session working buffer, are consolidated into
long-term memory when they recur, and are archived (never silently deleted) by expiry,
TTL, forgetting or capacity budgets. See docs/lifecycle.md."""

from engram.lifecycle import exponential, fifo, hyperbolic, lru, power  # noqa: F401  (register)
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
