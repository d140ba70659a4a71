"""Least recently used: a memory found or recalled lately stays in the buffer longer."""

from __future__ import annotations

from dataclasses import dataclass

from engram.lifecycle.replacement import ReplacementPolicy, register_replacement
from engram.store.base import RetentionRow


def last_use(row: RetentionRow) -> tuple[float, int]:
    """When it was last added, found by a search or recalled (ties: the newer key)."""
    stamps = [row.created_at, row.last_accessed_at, row.last_recalled_at]
    return max(s.timestamp() for s in stamps if s is not None), row.key


@register_replacement("lru")
@dataclass(frozen=True)
class LRUReplacement(ReplacementPolicy):
    """Keep the most recently used (KARMA's adaptive short-term replacement, by recency
    of use rather than of arrival)."""

    def keep(self, rows: list[RetentionRow], size: int) -> list[RetentionRow]:
        return sorted(rows, key=last_use)[-size:]
