"""Materialize a cube's text memories as an activation memory (a stored KV block)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from engram.activation.block import KVBlock
from engram.activation.build import build_kv
from engram.activation.compress.base import Compressor
from engram.activation.store import KVStore
from engram.config import EngramConfig
from engram.errors import ValidationError
from engram.types import MemoryItem


class MemorySource(Protocol):
    """What choosing memories needs of the facade (`Memory` has it); the tier never
    imports the facade."""

    def get(
        self, memory_id: str, *, user_id: str | None = ..., agent_id: str | None = ...
    ) -> MemoryItem: ...

    def iter_all(
        self,
        *,
        user_id: str | None = ...,
        agent_id: str | None = ...,
        include_archived: bool = ...,
    ) -> Iterator[MemoryItem]: ...


def kv_store(config: EngramConfig) -> KVStore:
    """The store of activation memories: `kv/` under `artifacts_dir` (default the home)."""
    return KVStore(config.artifacts / "kv", config.kv.ram_budget_bytes, config.kv.chunk_tokens)


def select_memories(
    memory: MemorySource,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    ids: Sequence[str] | None = None,
    top: int | None = None,
    recent: int | None = None,
) -> list[MemoryItem]:
    """Exactly one of: `ids` (in that order), the `top` most-accessed, the `recent` newest.
    The last two come back oldest first, so the block reads chronologically."""
    chosen = [x for x in (ids, top, recent) if x is not None]
    if len(chosen) != 1:
        raise ValidationError("choose the memories by exactly one of ids, top or recent")
    if ids is not None:
        if not ids:
            raise ValidationError("ids must name at least one memory")
        return [memory.get(i, user_id=user_id, agent_id=agent_id) for i in ids]
    count = top if top is not None else recent
    if count is None or count < 1:
        raise ValidationError("top/recent must be at least 1")
    items = list(memory.iter_all(user_id=user_id, agent_id=agent_id))
    if not items:
        raise ValidationError("the owner has no active memories")
    if top is not None:
        items.sort(key=lambda i: (i.access_count, i.last_accessed_at or i.created_at), reverse=True)
    else:
        items.sort(key=lambda i: i.created_at, reverse=True)
    picked = items[:count]
    picked.sort(key=lambda i: i.created_at)
    return picked


def block_text(items: Sequence[MemoryItem]) -> str:
    """The text a block is built from: one memory per line, speaker first when known."""
    lines = []
    for item in items:
        name = item.provenance.name
        lines.append(f"{name}: {item.memory}" if name else item.memory)
    return "\n".join(lines)


def build_block(
    items: Sequence[MemoryItem],
    model: Any,
    tokenizer: Any,
    compressor: Compressor | None = None,
    fingerprint: str | None = None,
) -> KVBlock:
    """The KV block of `items` (one owner's), with the owner and memory ids in its meta."""
    if not items:
        raise ValidationError("a KV block needs at least one memory")
    meta = {
        "owner": items[0].provenance.owner,
        "memory_ids": [item.id for item in items],
        "model": str(getattr(model.config, "_name_or_path", "")),
    }
    return build_kv(model, block_text(items), tokenizer, compressor, meta, fingerprint)


def materialize(
    memory: MemorySource,
    store: KVStore,
    model: Any,
    tokenizer: Any,
    *,
    compressor: Compressor | None = None,
    fingerprint: str | None = None,
    user_id: str | None = None,
    agent_id: str | None = None,
    ids: Sequence[str] | None = None,
    top: int | None = None,
    recent: int | None = None,
) -> tuple[str, KVBlock]:
    """Build and store the KV block of the chosen memories; returns (key, block)."""
    items = select_memories(
        memory, user_id=user_id, agent_id=agent_id, ids=ids, top=top, recent=recent
    )
    block = build_block(items, model, tokenizer, compressor, fingerprint)
    return store.put(block), block
