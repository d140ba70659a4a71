"""The scheduler: composes the configured policies into one owner's plan, and turns a plan
into jobs on the store's queue (the moves run there, never on the request path)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING

from engram.scheduler.move import Move, Place, SchedulePlan
from engram.scheduler.registry import build_policies
from engram.scheduler.usage import Usage, read_usage
from engram.store.jobs import NewJob
from engram.timeutil import iso

if TYPE_CHECKING:
    from engram.config import SchedulerConfig
    from engram.cube import MemCube
    from engram.lifecycle.core import Lifecycle

# job kinds (the `extractor` column of the queue) by what running a move does
JOB_KINDS = {"build": "scheduler:kv", "evict": "scheduler:kv", "learn": "scheduler:adapter"}
JOB_KINDS["archive"] = "scheduler:decay"


class Scheduler:
    """The configured policies, applied in order to one owner's usage."""

    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.policies = build_policies(config.policies)

    def plan(self, cube: MemCube, lifecycle: Lifecycle, at: datetime) -> SchedulePlan:
        """What should move now (a dry run: nothing is written)."""
        usage = read_usage(cube, lifecycle, self.config, at)
        return self.plan_usage(usage)

    def plan_usage(self, usage: Usage) -> SchedulePlan:
        moves: list[Move] = []
        moved: set[str] = set()
        for policy in self.policies:
            free = [u for u in usage.memories if u.id not in moved]
            for move in policy.plan(usage, free):
                if moved.isdisjoint(move.ids):  # at most one move per memory and plan
                    moves.append(move)
                    moved.update(move.ids)
        held = sum(b.nbytes for b in usage.kv.values())
        kv_bytes = held + sum(
            m.nbytes for m in moves if Place.ACTIVATION in (m.from_tier, m.to_tier)
        )
        return SchedulePlan(
            owner=usage.owner,
            at=usage.at,
            dry_run=True,
            moves=moves,
            kv_bytes=kv_bytes,
            kv_budget_bytes=self.config.kv.budget_bytes,
        )


def plan_jobs(cube: int, plan: SchedulePlan, keys: dict[str, int]) -> list[NewJob]:
    """One job per kind of move; payloads name memories by store key (never by id or
    text, which must leave no trace in the queue once erased)."""
    by_kind: dict[str, list[dict[str, object]]] = {}
    for move in plan.moves:
        found = [keys[i] for i in move.ids if i in keys]
        if found:
            by_kind.setdefault(JOB_KINDS[move.action], []).append(
                {
                    "keys": found,
                    "action": move.action,
                    "rule": move.rule,
                    "reason": move.reason,
                    "score": move.score,
                }
            )
    jobs = []
    for kind, moves in sorted(by_kind.items()):
        body = json.dumps({"at": iso(plan.at), "moves": moves}, sort_keys=True)
        digest = hashlib.sha256(f"{kind}\x00{body}".encode()).hexdigest()[:32]
        jobs.append(NewJob(cube, None, kind, digest, {"moves": moves}))
    return jobs
