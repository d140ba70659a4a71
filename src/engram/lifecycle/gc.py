"""Planning one gc run over one owner's active memories: pure, no I/O, so a dry run and a
real run decide exactly alike. Steps, in order: working-buffer replacement, consolidation
(promotion of what recurs), then eviction by expiry, TTL, forgetting and capacity,
weakest first. Pinned memories are never evicted; the working buffer is never evicted by
forgetting or capacity (it is the conversation in progress)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engram.config import RetentionConfig, RetentionPolicy
from engram.lifecycle.decay import DecayLaw
from engram.lifecycle.policy import OwnerPolicies
from engram.lifecycle.replacement import ReplacementPolicy
from engram.lifecycle.report import GcAction, GcDecision, Tier
from engram.store.base import RetentionPlan, RetentionRow
from engram.timeutil import iso


@dataclass
class _Scored:
    row: RetentionRow
    tier: Tier
    strength: float
    retrievability: float
    importance: float

    @property
    def weakness_order(self) -> tuple[float, int]:
        return self.retrievability * self.importance, self.row.key


@dataclass
class GcPlanner:
    """Decides one owner's gc plan from its rows, policies and near-duplicate counts."""

    config: RetentionConfig
    law: DecayLaw
    replacement: ReplacementPolicy
    owner: str
    policies: OwnerPolicies
    at: datetime
    _decisions: list[GcDecision] = field(default_factory=list)
    _by_type: dict[str, RetentionPolicy] = field(default_factory=dict)

    def policy(self, memory_type: str) -> RetentionPolicy:
        """The effective policy of a type (computed once per run)."""
        found = self._by_type.get(memory_type)
        if found is None:
            found = self._by_type[memory_type] = self.policies.for_type(memory_type)
        return found

    def strength(self, row: RetentionRow) -> float:
        return row.strength if row.strength is not None else self.config.initial_strength_days

    def retrievability(self, row: RetentionRow, strength: float) -> float:
        since = row.last_recalled_at or row.created_at
        elapsed = (self.at - since).total_seconds() / 86400.0
        return float(self.law.retrievability(elapsed, strength))

    def importance(self, row: RetentionRow) -> float:
        if row.importance is not None:
            return max(row.importance, 0.0)
        weight = self.policy(row.type).importance
        return 1.0 if weight is None else weight

    def score(self, row: RetentionRow) -> _Scored:
        strength = self.strength(row)
        return _Scored(
            row, Tier(row.tier), strength, self.retrievability(row, strength), self.importance(row)
        )

    def _decide(self, s: _Scored, action: GcAction, rule: str, reason: str) -> None:
        self._decisions.append(
            GcDecision(
                owner=self.owner,
                id=s.row.id,
                type=s.row.type,
                tier=s.tier,
                action=action,
                rule=rule,
                reason=reason,
                retrievability=round(s.retrievability, 6),
                strength_days=round(s.strength, 4),
                importance=s.importance,
            )
        )

    def plan(
        self, rows: list[RetentionRow], recurring: dict[int, int]
    ) -> tuple[RetentionPlan, list[GcDecision]]:
        scored = {row.key: self.score(row) for row in rows}
        displace = self._replace(scored)
        promote = self._consolidate(scored, recurring)
        displace = tuple(k for k in displace if k not in promote)
        evict = self._evict(scored)
        plan = RetentionPlan(displace, promote, self.config.consolidation.strength_days, evict)
        return plan, self._decisions

    def _replace(self, scored: dict[int, _Scored]) -> tuple[int, ...]:
        working = [s.row for s in scored.values() if s.tier is Tier.WORKING]
        size = self.config.working.size
        gone = self.replacement.displaced(working, size)
        for row in gone:
            s = scored[row.key]
            why = f"left the working buffer ({self.config.working.replacement}, size {size})"
            self._decide(s, GcAction.DISPLACE, "working", why)
            s.tier = Tier.EPISODIC
        return tuple(row.key for row in gone)

    def _consolidate(self, scored: dict[int, _Scored], recurring: dict[int, int]) -> dict[int, str]:
        rules = self.config.consolidation
        promote: dict[int, str] = {}
        for key, s in scored.items():
            if s.tier is Tier.LONG_TERM:
                continue
            if s.row.recall_count >= rules.min_recalls:
                rule, why = "recalls", f"recalled {s.row.recall_count} times"
            elif recurring.get(key, 0) >= rules.min_sessions:
                rule, why = "duplicates", f"near-duplicates in {recurring[key]} sessions"
            else:
                continue
            promote[key] = f"consolidated: {why}"
            self._decide(s, GcAction.PROMOTE, rule, promote[key])
            s.tier = Tier.LONG_TERM
            s.strength = max(s.strength, rules.strength_days)
            s.retrievability = self.retrievability(s.row, s.strength)
        return promote

    def _evict(self, scored: dict[int, _Scored]) -> dict[int, str]:
        evict: dict[int, str] = {}

        def out(s: _Scored, rule: str, why: str) -> None:
            evict[s.row.key] = f"evicted: {why}"
            self._decide(s, GcAction.EVICT, rule, evict[s.row.key])

        candidates = [s for s in scored.values() if not s.row.pinned]
        for s in candidates:
            policy = self.policy(s.row.type)
            expires = s.row.expires_at
            if expires is not None and expires <= self.at:
                out(s, "expires_at", f"expired at {iso(expires)[:19]}")
            elif policy.ttl_days is not None and self._older(s.row, policy.ttl_days):
                out(s, "ttl", f"older than the {s.row.type} TTL of {policy.ttl_days:g} days")
            elif self._forgotten(s, policy):
                out(
                    s,
                    "forgotten",
                    f"retrievability {s.retrievability:.3f} < {policy.min_retrievability:g}",
                )
        for memory_type in sorted({s.row.type for s in scored.values()}):
            budget = self.policy(memory_type).max_active
            of_type = [s for s in scored.values() if s.row.type == memory_type]
            self._over_budget(of_type, budget, memory_type, evict, out)
        total = self.policies.total().max_active
        self._over_budget(list(scored.values()), total, "all types", evict, out)
        return evict

    def _older(self, row: RetentionRow, days: float) -> bool:
        return row.created_at + timedelta(days=days) <= self.at

    @staticmethod
    def _forgotten(s: _Scored, policy: RetentionPolicy) -> bool:
        floor = policy.min_retrievability
        return floor is not None and s.tier is not Tier.WORKING and s.retrievability < floor

    @staticmethod
    def _over_budget(
        group: list[_Scored],
        budget: int | None,
        what: str,
        evict: dict[int, str],
        out: Callable[[_Scored, str, str], None],
    ) -> None:
        if budget is None:
            return
        alive = [s for s in group if s.row.key not in evict]
        excess = len(alive) - budget
        if excess <= 0:
            return
        evictable = [s for s in alive if not s.row.pinned and s.tier is not Tier.WORKING]
        for s in sorted(evictable, key=lambda s: s.weakness_order)[:excess]:
            why = (
                f"over the {what} budget of {budget} (retrievability {s.retrievability:.3f}"
                f" x importance {s.importance:g}, weakest first)"
            )
            out(s, "capacity", why)
