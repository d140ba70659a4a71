"""What the scheduler decides: moves of memories between tiers, and a plan of them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field

SOURCE = "scheduler"  # the `source` of every version row an executed move writes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Place(StrEnum):
    """Where a move takes memories: the three tiers, and the archive (text kept, inactive)."""

    TEXT = "text"
    ACTIVATION = "activation"
    PARAMETRIC = "parametric"
    ARCHIVE = "archive"


class Move(_Strict):
    """One decision: memories from one tier to another, by which rule and why."""

    ids: list[str] = Field(description="The memories moved.")
    from_tier: Place
    to_tier: Place
    rule: str = Field(description="The policy that decided: hot-to-kv, cold-decay, ...")
    reason: str = Field(description="What the version row says when the move runs.")
    score: float = Field(description="The number the rule ranked by (heat, confirmations, R).")
    nbytes: int = Field(
        default=0,
        description="Bytes the move adds to the KV tier (estimated before a build); "
        "negative when it frees them.",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def action(self) -> str:
        """build, evict, learn or archive: what running the move does."""
        if self.to_tier is Place.ACTIVATION:
            return "build"
        if self.from_tier is Place.ACTIVATION:
            return "evict"
        return "learn" if self.to_tier is Place.PARAMETRIC else "archive"


class SchedulePlan(_Strict):
    """The moves of one owner at `at`; `queued`: jobs enqueued to run them (0: dry run)."""

    owner: str
    at: datetime
    dry_run: bool
    moves: list[Move]
    kv_bytes: int = Field(description="Bytes of the owner's scheduled KV blocks after the plan.")
    kv_budget_bytes: int
    queued: int = 0

    def count(self, action: str) -> int:
        return sum(1 for m in self.moves if m.action == action)
