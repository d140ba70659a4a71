"""The retention verbs of `Memory` (pin, unpin, reinforce, retention, working_memory, gc,
retention policies): validation at the public boundary, then delegation to Lifecycle.
Mixed into Memory so memory.py stays small; AsyncMemory wraps them like every verb."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engram.config import RetentionPolicy
from engram.errors import NotFoundError, ValidationError
from engram.lifecycle.policy import ALL_TYPES, OwnerPolicies, check_policy
from engram.lifecycle.report import GcReport, RetentionInfo
from engram.scope import Scope, check_flag, owner_args, parse_memory_type, parse_time
from engram.types import MemoryItem

if TYPE_CHECKING:
    from engram.cube import MemCube
    from engram.lifecycle.core import Lifecycle
    from engram.store.base import Store


def utc(value: datetime) -> datetime:
    """Naive times are UTC (as everywhere in Engram)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _at(value: datetime | str | None) -> datetime:
    parsed = parse_time(value, "at")
    return datetime.now(UTC) if parsed is None else utc(parsed)


class RetentionVerbs:
    """Memory's retention verbs; see docs/lifecycle.md."""

    if TYPE_CHECKING:
        lifecycle: Lifecycle
        store: Store

        def cube(self, scope: Scope, create: bool = False) -> MemCube | None: ...
        def _owned(self, memory_id: str, user_id: str | None, agent_id: str | None) -> MemCube: ...
        def _reason(self, reason: str | None) -> str | None: ...
        def owners(self) -> list[str]: ...

    def _located(
        self, memory_id: str, user_id: str | None, agent_id: str | None
    ) -> tuple[MemCube, int]:
        cube = self._owned(memory_id, user_id, agent_id)
        found = self.store.locate(memory_id)
        if found is None or found.cube != cube.id:
            raise NotFoundError(f"no memory {memory_id!r} for {cube.owner}")
        return cube, found.key

    def retention(
        self,
        memory_id: str,
        *,
        at: datetime | str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> RetentionInfo:
        """A memory's tier, strength, retrievability (now, or `at`), recalls, pin, expiry."""
        cube, key = self._located(memory_id, user_id, agent_id)
        return self.lifecycle.info(cube.owner, cube.id, key, _at(at))

    def reinforce(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> RetentionInfo:
        """An explicit successful recall (the app used this memory): strength grows, the
        more the closer it was to being forgotten. Feedback `cited`/`used` does the same."""
        cube, key = self._located(memory_id, user_id, agent_id)
        self.lifecycle.reinforce(cube.id, [key])
        return self.lifecycle.info(cube.owner, cube.id, key)

    def pin(
        self,
        memory_id: str,
        *,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> RetentionInfo:
        """Never evict this memory (by expiry, TTL, forgetting or capacity); records a
        version. `delete` still archives or erases it when asked."""
        return self._pin(memory_id, True, reason, user_id, agent_id)

    def unpin(
        self,
        memory_id: str,
        *,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> RetentionInfo:
        """Make a pinned memory evictable again; records a version."""
        return self._pin(memory_id, False, reason, user_id, agent_id)

    def _pin(
        self,
        memory_id: str,
        pinned: bool,
        reason: str | None,
        user_id: str | None,
        agent_id: str | None,
    ) -> RetentionInfo:
        reason = self._reason(reason)
        cube, key = self._located(memory_id, user_id, agent_id)
        self.lifecycle.set_pinned(cube.id, key, pinned, reason)
        return self.lifecycle.info(cube.owner, cube.id, key)

    def working_memory(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
    ) -> list[MemoryItem]:
        """The short-term buffer of a session (`session_id=None`: memories without a
        session), oldest first: the recent turns to put in a prompt as they are."""
        scope = Scope.of(user_id, agent_id, session_id)
        cube = self.cube(scope)
        if cube is None:
            return []
        keys = self.lifecycle.working(cube.id, session_id)
        items = self.store.by_keys(cube.id, keys)
        agent = scope.agent_filter
        return [
            items[k]
            for k in keys
            if k in items and (agent is None or items[k].provenance.agent_id == agent)
        ]

    def gc(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        dry_run: bool = False,
        at: datetime | str | None = None,
    ) -> GcReport:
        """Retention maintenance for one owner (none given: every owner): working-buffer
        replacement, consolidation, then eviction by expiry, TTL, forgetting and capacity,
        weakest first. Evicted memories are archived (restorable) with a version saying
        why (source 'gc'). `dry_run=True` changes nothing and reports the same decisions;
        `at` evaluates as of another time (e.g. what would go in a month)."""
        dry_run = check_flag(dry_run, "dry_run")
        when = _at(at)
        if user_id is None and agent_id is None:
            owners = self.owners()
        else:
            scope = Scope.of(user_id, agent_id)
            if scope.agent_filter is not None:
                raise ValidationError("gc works on a whole owner: give user_id or agent_id")
            owners = [str(scope.owner)]
        decisions = []
        for owner in owners:
            cube = self.cube(Scope.of(**owner_args(owner)))
            if cube is not None:
                decisions += self.lifecycle.gc(owner, cube.id, when, dry_run)
        return GcReport(dry_run=dry_run, at=when, owners=owners, decisions=decisions)

    def set_retention_policy(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        memory_type: str = ALL_TYPES,
        reset: bool = False,
        **rules: Any,
    ) -> RetentionPolicy:
        """Override the configured retention rules for one owner and memory type ('*':
        all types): `max_active`, `ttl_days`, `min_retrievability`, `importance` (None
        clears an inherited value). Replaces the owner's previous override of that type;
        `reset=True` removes it. Returns the effective policy. Stored with the owner's
        memories (erasing them all erases it too)."""
        reset = check_flag(reset, "reset")
        memory_type = self._policy_type(memory_type)
        if reset and rules:
            raise ValidationError("reset=True takes no rules")
        policy = None if reset else check_policy(rules)
        scope = Scope.of(user_id, agent_id)
        if scope.agent_filter is not None:
            raise ValidationError("a retention policy belongs to one owner: give one id")
        cube = self.cube(scope, create=not reset)
        if cube is not None:
            self.store.set_retention_policy(cube.id, memory_type, policy)
        return self.retention_policy(user_id=user_id, agent_id=agent_id, memory_type=memory_type)

    def retention_policy(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        memory_type: str = ALL_TYPES,
    ) -> RetentionPolicy:
        """The effective rules for an owner and memory type (config + the owner's own)."""
        memory_type = self._policy_type(memory_type)
        cube = self.cube(Scope.of(user_id, agent_id))
        own = {} if cube is None else self.store.retention_policies(cube.id)
        return OwnerPolicies(self.lifecycle.config.policies, own).for_type(memory_type)

    @staticmethod
    def _policy_type(memory_type: Any) -> str:
        return ALL_TYPES if memory_type == ALL_TYPES else parse_memory_type(memory_type)
