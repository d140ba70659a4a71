"""AsyncMemory: the same verbs as Memory, awaited. No logic is repeated here: each
coroutine runs the synchronous method in a worker thread (SQLite and torch block anyway),
so there is one implementation to test and to keep right."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from engram.config import EngramConfig
from engram.memory import Memory

P = ParamSpec("P")
R = TypeVar("R")


def _awaitable(
    method: Callable[Concatenate[Memory, P], R],
) -> Callable[Concatenate[AsyncMemory, P], Awaitable[R]]:
    @functools.wraps(method)
    async def run(self: AsyncMemory, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    return run


class AsyncMemory:
    """Async facade over a Memory; safe to call from many tasks at once."""

    def __init__(
        self, config: EngramConfig | None = None, *, memory: Memory | None = None, **overrides: Any
    ):
        self.sync = memory or Memory(config, **overrides)

    add = _awaitable(Memory.add)
    add_batch = _awaitable(Memory.add_batch)
    search = _awaitable(Memory.search)
    get = _awaitable(Memory.get)
    get_all = _awaitable(Memory.get_all)
    update = _awaitable(Memory.update)
    delete = _awaitable(Memory.delete)
    restore = _awaitable(Memory.restore)
    delete_all = _awaitable(Memory.delete_all)
    history = _awaitable(Memory.history)
    stats = _awaitable(Memory.stats)
    owners = _awaitable(Memory.owners)
    close = _awaitable(Memory.close)

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
