"""`hot-to-kv`: the owner's hottest memories each get a KV block, within a byte budget.

Hottest first, each memory's block (its size when built, else estimated from its text) is
kept while it fits `scheduler.kv.budget_bytes`; blocks of memories outside that hot set,
coldest first, are evicted (the text stays). A block built from older text is rebuilt."""

from __future__ import annotations

from engram.scheduler.move import Move, Place
from engram.scheduler.policy import SchedulePolicy
from engram.scheduler.registry import register_policy
from engram.scheduler.usage import MemoryUse, Usage

MIB = 1 << 20


def _use(u: MemoryUse, usage: Usage) -> str:
    idle = usage.days_since(u.last_used)
    return f"{u.retrievals} hits, {u.citations} cited, last used {idle:.1f} d ago"


@register_policy
class HotToKV(SchedulePolicy):
    """Memories retrieved often, recently → a prebuilt KV block (prefill skipped)."""

    name = "hot-to-kv"

    def plan(self, usage: Usage, free: list[MemoryUse]) -> list[Move]:
        cfg = usage.config.kv
        per_char = usage.bytes_per_char()
        hot = sorted((u for u in free if u.heat >= cfg.min_heat), key=lambda u: (-u.heat, u.id))
        moves: list[Move] = []
        used, kept = 0, set()
        for u in hot:
            held = usage.kv.get(u.id)
            fresh = held is not None and usage.current(u, held.memory_version)
            size = held.nbytes if held is not None and fresh else int(len(u.item.memory) * per_char)
            if used + size > cfg.budget_bytes:
                continue  # a colder, smaller block may still fit
            used += size
            kept.add(u.id)
            if fresh:
                continue
            why = f"heat {u.heat:.1f} >= {cfg.min_heat:g} ({_use(u, usage)})"
            if held is not None:
                why += f"; its block has text of v{held.memory_version}, rebuilt"
            added = size - (held.nbytes if held is not None else 0)
            moves.append(self._move(u.id, Place.TEXT, Place.ACTIVATION, why, u.heat, added))
        free_ids = {u.id for u in free}
        moves += self._evictions(usage, kept, free_ids)
        return moves

    def _evictions(self, usage: Usage, kept: set[str], free: set[str]) -> list[Move]:
        cfg = usage.config.kv
        uses = {u.id: u for u in usage.memories}
        # another policy's memories keep their blocks; an archived or erased one's go
        gone = [
            b for mid, b in usage.kv.items() if mid not in kept and (mid in free or mid not in uses)
        ]
        gone.sort(key=lambda b: (uses[b.memory_id].heat if b.memory_id in uses else -1.0, b.key))
        moves = []
        for block in gone:
            u = uses.get(block.memory_id)
            if u is None:
                why, heat = "memory no longer active", 0.0
            elif u.heat < cfg.min_heat:
                why, heat = f"cooled: heat {u.heat:.1f} < {cfg.min_heat:g}", u.heat
            else:
                budget = cfg.budget_bytes / MIB
                why = f"colder than the hot set (heat {u.heat:.1f}); {budget:g} MiB budget full"
                heat = u.heat
            moves.append(
                self._move(block.memory_id, Place.ACTIVATION, Place.TEXT, why, heat, -block.nbytes)
            )
        return moves

    def _move(self, mid: str, src: Place, dst: Place, why: str, score: float, nbytes: int) -> Move:
        return Move(
            ids=[mid],
            from_tier=src,
            to_tier=dst,
            rule=self.name,
            reason=why,
            score=round(score, 4),
            nbytes=nbytes,
        )
