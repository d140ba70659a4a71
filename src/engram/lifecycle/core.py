"""Lifecycle: the retention logic behind the Memory verbs. It reads and writes retention
state through the store and decides with the configured decay law, replacement policy,
policies and consolidation rules (planning is pure: see gc.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from engram.config import RetentionConfig
from engram.errors import ConfigError, NotFoundError, ValidationError
from engram.lifecycle.consolidation import recurring_sessions
from engram.lifecycle.decay import build_decay_law
from engram.lifecycle.gc import GcPlanner
from engram.lifecycle.policy import ALL_TYPES, OwnerPolicies
from engram.lifecycle.replacement import build_replacement
from engram.lifecycle.report import GcDecision, RetentionInfo, Tier
from engram.store.base import NewMemory, RetentionPlan, RetentionRow, Store
from engram.store.feedback import FeedbackLabel

GC_SOURCE = "gc"


def check_expiry(ttl: Any, expires_at: datetime | None, now: datetime) -> datetime | None:
    """`ttl` (a timedelta, or seconds) or `expires_at`, not both -> the expiry time."""
    if ttl is None:
        return expires_at
    if expires_at is not None:
        raise ValidationError("give ttl or expires_at, not both")
    given = repr(ttl)
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        given = f"{ttl:g}"  # -1 and -1.0 (JSON, the CLI) read alike
        try:
            ttl = timedelta(seconds=ttl)
        except (ValueError, OverflowError) as err:  # NaN, inf, beyond timedelta's range
            raise ValidationError(f"ttl must be a finite number of seconds, got {ttl!r}") from err
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise ValidationError(
            f"ttl must be a positive timedelta or number of seconds, got {given}"
        )
    try:
        return now + ttl
    except OverflowError as err:
        raise ValidationError("ttl is too large") from err


class Lifecycle:
    """Retention of the memories in one store, as configured by `retention`."""

    def __init__(self, config: RetentionConfig, store: Store):
        self.check(config)
        self.config = config
        self.store = store
        self.law = build_decay_law(config.decay)
        self.replacement = build_replacement(config.working.replacement)

    @staticmethod
    def check(config: RetentionConfig) -> None:
        """ConfigError for an unknown law, replacement policy or policy key."""
        build_decay_law(config.decay)
        build_replacement(config.working.replacement)
        for name in config.policies:
            if name != ALL_TYPES and not name.isidentifier():
                raise ConfigError(f"retention.policies: {name!r} is not '*' or a memory type")

    # -- state of one memory ----------------------------------------------------------

    def planner(self, owner: str, cube: int, at: datetime) -> GcPlanner:
        policies = OwnerPolicies(self.config.policies, self.store.retention_policies(cube))
        return GcPlanner(self.config, self.law, self.replacement, owner, policies, at)

    def info(self, owner: str, cube: int, key: int, at: datetime | None = None) -> RetentionInfo:
        at = at or datetime.now(UTC)
        rows = self.store.retention_rows(cube, [key])
        if not rows:
            raise NotFoundError(f"no memory with key {key} for {owner} (erased meanwhile?)")
        return self._info(self.planner(owner, cube, at), rows[0])

    @staticmethod
    def _info(planner: GcPlanner, row: RetentionRow) -> RetentionInfo:
        s = planner.score(row)
        return RetentionInfo(
            id=row.id,
            tier=Tier(row.tier),
            strength_days=s.strength,
            retrievability=s.retrievability,
            importance=s.importance,
            recall_count=row.recall_count,
            last_recalled_at=row.last_recalled_at,
            pinned=row.pinned,
            expires_at=row.expires_at,
            at=planner.at,
        )

    # -- writes -----------------------------------------------------------------------

    def new_rows(self, rows: list[NewMemory], expires_at: datetime | None) -> list[NewMemory]:
        """Rows about to be added, with their tier (buffered types enter working memory)
        and expiry."""
        working = self.config.working
        out = []
        for row in rows:
            buffered = working.size > 0 and row.type in working.types
            tier = Tier.WORKING if buffered else Tier.LONG_TERM
            out.append(replace(row, tier=tier.value, expires_at=expires_at))
        return out

    def reinforce(self, cube: int, keys: list[int], at: datetime | None = None) -> None:
        """A successful recall of each memory: strength grows, more the lower R was."""
        at = at or datetime.now(UTC)
        planner = GcPlanner(self.config, self.law, self.replacement, "", OwnerPolicies(), at)

        def grown(row: RetentionRow) -> float:
            s = planner.score(row)
            c = self.config
            new = self.law.strengthen(s.strength, s.retrievability, c.growth, c.spacing)
            return min(max(new, s.strength), c.max_strength_days)

        self.store.reinforce(cube, keys, grown, recalled=True, at=at)

    def weaken(self, cube: int, keys: list[int]) -> None:
        """Marked wrong: strength shrinks by `wrong_factor` (it is forgotten sooner)."""
        factor, initial = self.config.wrong_factor, self.config.initial_strength_days

        def shrunk(row: RetentionRow) -> float:
            return (row.strength if row.strength is not None else initial) * factor

        self.store.reinforce(cube, keys, shrunk, recalled=False, at=datetime.now(UTC))

    def on_feedback(self, cube: int, labels: dict[int, FeedbackLabel]) -> None:
        """Cited or used memories were recalled successfully; wrong ones are weakened."""
        good = [k for k, label in labels.items() if label is not FeedbackLabel.WRONG]
        bad = [k for k, label in labels.items() if label is FeedbackLabel.WRONG]
        if good:
            self.reinforce(cube, good)
        if bad:
            self.weaken(cube, bad)

    def set_pinned(self, cube: int, key: int, pinned: bool, reason: str | None) -> None:
        why = reason or ("pinned" if pinned else "unpinned")
        self.store.set_retention(cube, [key], pinned=pinned, reason=why, source="api")

    # -- gc ---------------------------------------------------------------------------

    def plan(self, owner: str, cube: int, at: datetime) -> tuple[RetentionPlan, list[GcDecision]]:
        rows = self.store.retention_rows(cube)
        rules = self.config.consolidation
        candidates = [
            r.key for r in rows if r.tier != Tier.LONG_TERM and r.recall_count < rules.min_recalls
        ]
        recurring: dict[int, int] = {}
        if candidates:
            snapshot = self.store.snapshot(cube)
            recurring = recurring_sessions(
                snapshot, candidates, rules.duplicate_similarity, rules.min_words
            )
        return self.planner(owner, cube, at).plan(rows, recurring)

    def gc(self, owner: str, cube: int, at: datetime, dry_run: bool) -> list[GcDecision]:
        """Plan, and unless `dry_run` apply in one transaction; decisions no longer valid
        when applied (pinned or archived meanwhile) are left out of the result."""
        plan, decisions = self.plan(owner, cube, at)
        if dry_run or not len(plan):
            return decisions
        done = self.store.apply_retention(cube, plan, GC_SOURCE)
        ids = {r.key: r.id for r in self.store.retention_rows(cube, sorted(_keys(done)))}
        kept = {ids[k] for k in _keys(done) if k in ids}
        return [d for d in decisions if d.id in kept]

    def expire_due(self, cube: int) -> int:
        """Archive the cube's memories whose `expires_at` has passed (one indexed read
        when none has)."""
        now = datetime.now(UTC)
        keys = self.store.expired(cube, now)
        if not keys:
            return 0
        rows = self.store.retention_rows(cube, keys)
        plan = RetentionPlan(
            evict={r.key: f"evicted: expired at {r.expires_at:%Y-%m-%dT%H:%M:%S}" for r in rows}
        )
        return len(self.store.apply_retention(cube, plan, GC_SOURCE).evict)

    def working(self, cube: int, session_id: str | None) -> list[int]:
        """Keys in the working buffer of a session, oldest first, as the replacement
        policy would leave it (gc makes the same choice durable)."""
        rows = [
            r
            for r in self.store.retention_rows(cube, tiers=(Tier.WORKING.value,))
            if r.session_id == session_id
        ]
        gone = {r.key for r in self.replacement.displaced(rows, self.config.working.size)}
        return [r.key for r in rows if r.key not in gone]


def _keys(plan: RetentionPlan) -> set[int]:
    return {*plan.displace, *plan.promote, *plan.evict}
