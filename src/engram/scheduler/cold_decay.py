"""`cold-decay`: weak memories nobody used for a while are archived (restorable, with a
version saying why) through retention's own archive path, as gc archives forgotten ones.

A memory goes when its retrievability on the forgetting curve (`retention.decay`) is
below `max_retrievability` and it was not retrieved or recalled for `cold_days`; pinned
memories and the turns in a session's working buffer are never touched."""

from __future__ import annotations

from engram.scheduler.move import Move, Place
from engram.scheduler.policy import SchedulePolicy
from engram.scheduler.registry import register_policy
from engram.scheduler.usage import MemoryUse, Usage


@register_policy
class ColdDecay(SchedulePolicy):
    """Weak, cold memories → the archive."""

    name = "cold-decay"

    def plan(self, usage: Usage, free: list[MemoryUse]) -> list[Move]:
        cfg = usage.config.decay
        moves = []
        for u in sorted(free, key=lambda u: (u.retrievability, u.id)):
            if u.row.pinned or u.buffered:
                continue
            idle = usage.days_since(u.last_used or u.item.created_at)
            if u.retrievability < cfg.max_retrievability and idle >= cfg.cold_days:
                why = (
                    f"retrievability {u.retrievability:.3f} < {cfg.max_retrievability:g}, "
                    f"unused {idle:.0f} d"
                )
                moves.append(
                    Move(
                        ids=[u.id],
                        from_tier=Place.TEXT,
                        to_tier=Place.ARCHIVE,
                        rule=self.name,
                        reason=why,
                        score=round(u.retrievability, 6),
                    )
                )
        return moves
