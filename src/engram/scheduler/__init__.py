"""The scheduler: policies that move an owner's memories between tiers (text, activation,
parametric, archive) from how they are used; see docs/scheduler.md.

One registry (`POLICIES`, `register_policy`) names the policies; `scheduler.policies`
composes them in order. Plans are pure reads; moves run as jobs on the store's queue."""

from __future__ import annotations

from engram.scheduler.cold_decay import ColdDecay
from engram.scheduler.confirmed_to_adapter import ConfirmedToAdapter
from engram.scheduler.core import Scheduler
from engram.scheduler.hot_to_kv import HotToKV
from engram.scheduler.move import Move, Place, SchedulePlan
from engram.scheduler.policy import SchedulePolicy
from engram.scheduler.registry import POLICIES, build_policies, register_policy

__all__ = [
    "POLICIES",
    "ColdDecay",
    "ConfirmedToAdapter",
    "HotToKV",
    "Move",
    "Place",
    "SchedulePlan",
    "SchedulePolicy",
    "Scheduler",
    "build_policies",
    "register_policy",
]
