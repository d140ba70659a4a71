"""Working memory: each session's most recent memories live in a short-term buffer of
fixed size (KARMA, MemoryOS). When it overflows, a replacement policy picks which stay;
the rest leave the buffer (they become episodic memories that decay and may be evicted
or consolidated). A policy is one small class overriding `keep`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from engram.errors import ConfigError
from engram.store.base import RetentionRow


@dataclass(frozen=True)
class ReplacementPolicy:
    """Chooses the memories of one session's buffer that stay in it."""

    def keep(self, rows: list[RetentionRow], size: int) -> list[RetentionRow]:
        """At most `size` of `rows` (one session's buffer, in key order)."""
        raise NotImplementedError

    def displaced(self, rows: list[RetentionRow], size: int) -> list[RetentionRow]:
        """The buffered rows that must leave, over every session (`rows` in any order)."""
        by_session: dict[str | None, list[RetentionRow]] = {}
        for row in sorted(rows, key=lambda r: r.key):
            by_session.setdefault(row.session_id, []).append(row)
        out: list[RetentionRow] = []
        for buffer in by_session.values():
            if len(buffer) > size:
                kept = {r.key for r in self.keep(buffer, size)} if size else set()
                out += [r for r in buffer if r.key not in kept]
        return out


REPLACEMENT_POLICIES: dict[str, type[ReplacementPolicy]] = {}

P = TypeVar("P", bound=type[ReplacementPolicy])


def register_replacement(name: str) -> Callable[[P], P]:
    """Class decorator: make a policy selectable as `retention.working.replacement`."""

    def register(cls: P) -> P:
        REPLACEMENT_POLICIES[name] = cls
        return cls

    return register


def build_replacement(name: str) -> ReplacementPolicy:
    cls = REPLACEMENT_POLICIES.get(name)
    if cls is None:
        known = ", ".join(sorted(REPLACEMENT_POLICIES))
        raise ConfigError(f"unknown working-memory replacement {name!r}; known: {known}")
    return cls()


# The built-in strategies register themselves on import; importing them here (after the
# registry exists) makes every entry point see them, whichever module it imports first.
from engram.lifecycle import fifo, lru  # noqa: E402, F401, I001
