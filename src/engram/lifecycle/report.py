"""Typed results of the retention API: one memory's retention state, and what gc did or
would do (with the rule and the numbers behind each decision)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(StrEnum):
    WORKING = "working"  # in its session's short-term buffer
    EPISODIC = "episodic"  # left the buffer; decays, may be evicted or consolidated
    LONG_TERM = "long_term"  # consolidated, or added as a non-buffered type


class RetentionInfo(_Strict):
    """One memory's retention state at `at`."""

    id: str
    tier: Tier
    strength_days: float = Field(description="Half-life in days: R halves after this.")
    retrievability: float = Field(description="R in (0, 1] at `at`.")
    importance: float
    recall_count: int = Field(description="Successful recalls (cited/used, reinforce).")
    last_recalled_at: datetime | None
    pinned: bool
    expires_at: datetime | None
    at: datetime


class GcAction(StrEnum):
    DISPLACE = "displace"  # working -> episodic (buffer replacement)
    PROMOTE = "promote"  # -> long_term (consolidation)
    EVICT = "evict"  # archived (restorable)


class GcDecision(_Strict):
    """One change gc made (or would make) and why."""

    owner: str
    id: str
    type: str
    tier: Tier
    action: GcAction
    rule: str = Field(description="expires_at, ttl, forgotten, capacity, recalls, ...")
    reason: str = Field(description="What the version row says.")
    retrievability: float
    strength_days: float
    importance: float


class GcReport(_Strict):
    """What one gc run did (`dry_run=False`) or would do (`dry_run=True`)."""

    dry_run: bool
    at: datetime
    owners: list[str]
    decisions: list[GcDecision]

    def count(self, action: GcAction) -> int:
        return sum(1 for d in self.decisions if d.action is action)

    @property
    def evicted(self) -> int:
        return self.count(GcAction.EVICT)

    @property
    def promoted(self) -> int:
        return self.count(GcAction.PROMOTE)

    @property
    def displaced(self) -> int:
        return self.count(GcAction.DISPLACE)
