"""The scheduling-policy contract: one rule reads an owner's `Usage` and proposes moves.

A policy never writes. The scheduler composes the configured policies in order; each sees
the memories earlier ones left alone (a memory gets at most one move per plan)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from engram.scheduler.move import Move
from engram.scheduler.usage import MemoryUse, Usage


class SchedulePolicy(ABC):
    """One rule that decides which tier should hold some memories."""

    name: ClassVar[str]

    @abstractmethod
    def plan(self, usage: Usage, free: list[MemoryUse]) -> list[Move]:
        """Moves for the memories in `free` (those no earlier policy moved)."""
