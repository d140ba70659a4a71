"""First in, first out: the buffer holds the last N memories of the session."""

from __future__ import annotations

from dataclasses import dataclass

from engram.lifecycle.replacement import ReplacementPolicy, register_replacement
from engram.store.base import RetentionRow


@register_replacement("fifo")
@dataclass(frozen=True)
class FIFOReplacement(ReplacementPolicy):
    """Keep the most recently added (MemoryOS's short-term queue)."""

    def keep(self, rows: list[RetentionRow], size: int) -> list[RetentionRow]:
        return rows[-size:]
