"""AsyncMemory: the same verbs as Memory, awaited. No logic is repeated here: each
coroutine runs the synchronous method in a worker thread (SQLite and torch block anyway),
so there is one implementation to test and to keep right. `iter_all` is an async
iterator over `get_all` pages (a sync iterator cannot be awaited a step at a time)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from engram.config import EngramConfig
from engram.memory import Memory
from engram.tier_api import KVVerbs, LoRAVerbs
from engram.types import MemoryItem

P = ParamSpec("P")
R = TypeVar("R")


def _awaitable(
    method: Callable[Concatenate[Memory, P], R],
) -> Callable[Concatenate[AsyncMemory, P], Awaitable[R]]:
    @functools.wraps(method)
    async def run(self: AsyncMemory, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    return run


V = TypeVar("V", KVVerbs, LoRAVerbs)


def _in_thread(
    method: Callable[Concatenate[V, P], R],
) -> Callable[Concatenate[Any, P], Awaitable[R]]:
    """A tier verb awaited: the synchronous one runs in a worker thread."""

    @functools.wraps(method)
    async def run(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    return run


class AsyncKVVerbs:
    """`am.kv`: the verbs of `Memory.kv`, awaited."""

    def __init__(self, sync: KVVerbs):
        self.sync = sync

    build = _in_thread(KVVerbs.build)
    ls = _in_thread(KVVerbs.ls)
    get = _in_thread(KVVerbs.get)
    rm = _in_thread(KVVerbs.rm)
    stats = _in_thread(KVVerbs.stats)


class AsyncLoRAVerbs:
    """`am.lora`: the verbs of `Memory.lora`, awaited."""

    def __init__(self, sync: LoRAVerbs):
        self.sync = sync

    facts = _in_thread(LoRAVerbs.facts)
    train = _in_thread(LoRAVerbs.train)
    ls = _in_thread(LoRAVerbs.ls)
    manifest = _in_thread(LoRAVerbs.manifest)
    ask = _in_thread(LoRAVerbs.ask)


class AsyncMemory:
    """Async facade over a Memory; safe to call from many tasks at once."""

    def __init__(
        self, config: EngramConfig | None = None, *, memory: Memory | None = None, **overrides: Any
    ):
        self.sync = memory or Memory(config, **overrides)

    add = _awaitable(Memory.add)
    add_batch = _awaitable(Memory.add_batch)
    search = _awaitable(Memory.search)
    feedback = _awaitable(Memory.feedback)
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
    pin = _awaitable(Memory.pin)
    unpin = _awaitable(Memory.unpin)
    reinforce = _awaitable(Memory.reinforce)
    retention = _awaitable(Memory.retention)
    working_memory = _awaitable(Memory.working_memory)
    gc = _awaitable(Memory.gc)
    schedule = _awaitable(Memory.schedule)
    set_retention_policy = _awaitable(Memory.set_retention_policy)
    retention_policy = _awaitable(Memory.retention_policy)
    jobs = _awaitable(Memory.jobs)
    run_jobs = _awaitable(Memory.run_jobs)
    retry_jobs = _awaitable(Memory.retry_jobs)
    extract = _awaitable(Memory.extract)
    tiers = _awaitable(Memory.tiers)
    answer = _awaitable(Memory.answer)
    export_cube = _awaitable(Memory.export_cube)
    import_cube = _awaitable(Memory.import_cube)
    mount = _awaitable(Memory.mount)
    unmount = _awaitable(Memory.unmount)
    mounts = _awaitable(Memory.mounts)
    fuse_cube = _awaitable(Memory.fuse_cube)

    @property
    def kv(self) -> AsyncKVVerbs:
        return AsyncKVVerbs(self.sync.kv)

    @property
    def lora(self) -> AsyncLoRAVerbs:
        return AsyncLoRAVerbs(self.sync.lora)

    async def iter_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        include_archived: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[MemoryItem]:
        """Every memory of an owner, streamed: `async for item in am.iter_all(...)`.
        Each page of `page_size` (at most 1000) is read in a worker thread."""
        cursor: str | None = None
        while True:
            page = await self.get_all(
                user_id=user_id,
                agent_id=agent_id,
                limit=page_size,
                cursor=cursor,
                include_archived=include_archived,
            )
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
