"""AsyncMemory from asyncio (no pytest-asyncio: each test drives its own event loop)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from _engram_helpers import db_path, table_counts
from engram import AsyncMemory, Memory, MemoryState, NotFoundError, ValidationError, VersionEvent


def test_async_verbs(tmp_path: Path, embedder) -> None:
    async def main() -> None:
        async with AsyncMemory(memory=Memory(home=tmp_path, embedder=embedder)) as amem:
            items = await amem.add(
                ["I keep bees in the back garden.", "My neighbour sells honey at the market."],
                user_id="alice",
                session_id="s1",
            )
            assert [i.provenance.turn_index for i in items] == [0, 1]
            hits = await amem.search("beekeeping hobby", user_id="alice", k=1)
            assert hits[0].id == items[0].id

            page = await amem.get_all(user_id="alice", limit=1)
            rest = await amem.get_all(user_id="alice", cursor=page.next_cursor)
            assert [i.id for i in page.items + rest.items] == [i.id for i in items]

            updated = await amem.update(
                items[1].id, "My neighbour sells beeswax candles.", reason="corrected"
            )
            assert updated.version == 2
            await amem.delete(items[0].id, user_id="alice", reason="moved away")
            assert (await amem.get(items[0].id)).state is MemoryState.ARCHIVED
            assert items[0].id not in {h.id for h in await amem.search("bees", user_id="alice")}
            restored = await amem.restore(items[0].id)
            assert restored.state is MemoryState.ACTIVE

            history = await amem.history(items[0].id, user_id="alice")
            assert [v.event for v in history] == [
                VersionEvent.ADD,
                VersionEvent.DELETE,
                VersionEvent.RESTORE,
            ]
            assert history[1].reason == "moved away"
            assert (await amem.stats(user_id="alice")).active == 2
            assert await amem.owners() == ["user:alice"]

            with pytest.raises(NotFoundError):
                await amem.get("no-such-id", user_id="alice")
            with pytest.raises(ValidationError, match="empty"):
                await amem.add("   ", user_id="alice")

            await amem.delete(items[1].id, hard=True)
            with pytest.raises(NotFoundError):
                await amem.history(items[1].id)
            assert await amem.delete_all(user_id="alice") == 1

    asyncio.run(main())
    assert table_counts(db_path(tmp_path))["memories"] == 1


def test_twenty_concurrent_adds_all_land(tmp_path: Path, embedder) -> None:
    async def main() -> list[list]:
        amem = AsyncMemory(memory=Memory(home=tmp_path, embedder=embedder))
        try:
            results = await asyncio.gather(
                *(
                    amem.add(
                        f"Concurrent memory number {n} about birds.",
                        user_id="alice",
                        metadata={"n": n},
                    )
                    for n in range(20)
                )
            )
            page = await amem.get_all(user_id="alice", limit=100)
            hits = await amem.search("birds", user_id="alice", k=100, pipeline="dense")
            return [results, page.items, hits]
        finally:
            await amem.close()

    results, stored, hits = asyncio.run(main())
    ids = [r[0].id for r in results]
    assert len(set(ids)) == 20
    assert sorted(r[0].metadata["n"] for r in results) == list(range(20))
    assert {i.id for i in stored} == set(ids)
    assert {h.id for h in hits} == set(ids)


def test_async_memory_built_from_settings(tmp_path: Path, embedder) -> None:
    async def main() -> int:
        async with AsyncMemory(home=tmp_path, embedder=embedder, search={"default_k": 2}) as amem:
            await amem.add(["a", "b", "c"], agent_id="bot")
            return len(await amem.search("letters", agent_id="bot"))

    assert asyncio.run(main()) == 2
    assert (tmp_path / "engram.db").is_file()


def test_async_iter_all_streams_every_memory(tmp_path: Path, embedder) -> None:
    async def main() -> None:
        async with AsyncMemory(memory=Memory(home=tmp_path, embedder=embedder)) as amem:
            stored = await amem.add([f"note {i}" for i in range(7)], user_id="alice")
            await amem.delete(stored[3].id)
            seen = [i.id async for i in amem.iter_all(user_id="alice", page_size=2)]
            assert seen == [i.id for i in stored if i.id != stored[3].id]
            everything = amem.iter_all(user_id="alice", include_archived=True, page_size=3)
            assert [i.id async for i in everything] == [i.id for i in stored]
            assert [i async for i in amem.iter_all(user_id="nobody")] == []
            with pytest.raises(ValidationError, match="limit"):
                [i async for i in amem.iter_all(user_id="alice", page_size=5000)]

    asyncio.run(main())
