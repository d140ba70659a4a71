"""Who is calling and what they may touch: the one place REST and MCP decide scope.

A `Principal` is the caller (an API key, or the local user under `--no-auth` / stdio MCP).
`ScopedMemory` is the `Memory` as that caller sees it: every verb resolves the owner from
the caller's key, never from the client alone, and an owner the key may not address is
reported exactly as a missing memory (`NotFoundError`: 404, existence never confirmed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engram.errors import EngramError, NotFoundError
from engram.memory import Memory
from engram.scope import OwnerKwargs, owner_args
from engram.server.keys import ApiKey, KeyScope
from engram.types import CubeStats, FeedbackResult, MemoryItem, Page, SearchHit, Version


class ForbiddenError(EngramError):
    """The key's scope does not allow this kind of operation (403; says nothing of data)."""

    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    """The caller. `owner` is the one owner it may act for (None: any owner);
    `default_owner` is used when a request names no owner."""

    scope: KeyScope
    owner: str | None = None
    key_id: str | None = None
    default_owner: str | None = None

    @classmethod
    def of_key(cls, key: ApiKey) -> Principal:
        return cls(scope=key.scope, owner=key.owner, key_id=key.id, default_owner=key.owner)

    @classmethod
    def local(cls, default_owner: str | None = None) -> Principal:
        """No authentication (`--no-auth`, stdio MCP): the local user owns the whole store."""
        return cls(scope=KeyScope.ADMIN, default_owner=default_owner)

    @property
    def name(self) -> str:
        """For rate limits and logs: the key id, or 'local'."""
        return self.key_id or "local"

    def require(self, needed: KeyScope) -> None:
        if not self.scope.allows(needed):
            raise ForbiddenError(
                f"this key's scope is {self.scope.value!r}; the operation needs {needed.value!r}"
            )

    def owner_kwargs(
        self, user_id: str | None, agent_id: str | None, required: bool = True
    ) -> OwnerKwargs:
        """The user_id/agent_id a call runs with. A bound key addresses its own owner only;
        `agent_id` alone under a user key narrows to that agent's memories of the user."""
        if self.owner is None:  # any owner (admin, local)
            if user_id is None and agent_id is None and self.default_owner is not None:
                return owner_args(self.default_owner)
            return {"user_id": user_id, "agent_id": agent_id}
        kind, _, name = self.owner.partition(":")
        if kind == "user":
            if user_id is not None and user_id != name:
                raise NotFoundError(f"no owner user:{user_id}")
            return {"user_id": name, "agent_id": agent_id}
        if user_id is not None or (agent_id is not None and agent_id != name):
            asked = f"user:{user_id}" if user_id is not None else f"agent:{agent_id}"
            raise NotFoundError(f"no owner {asked}")
        return {"user_id": None, "agent_id": name}

    def by_id_kwargs(self, user_id: str | None, agent_id: str | None) -> OwnerKwargs:
        """Scope for calls by memory id: an unbound caller naming no owner reaches any id."""
        if self.owner is None and user_id is None and agent_id is None:
            return {"user_id": None, "agent_id": None}
        return self.owner_kwargs(user_id, agent_id)


class ScopedMemory:
    """The `Memory` verbs as one caller may use them; `source` marks provenance."""

    def __init__(self, memory: Memory, principal: Principal, source: str):
        self.memory, self.principal, self.source = memory, principal, source

    def add(
        self,
        messages: Any,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        memory_type: str = "turn",
        ttl: float | None = None,
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> list[MemoryItem]:
        self.principal.require(KeyScope.WRITE)
        return self.memory.add(
            messages,
            **self.principal.owner_kwargs(user_id, agent_id),
            session_id=session_id,
            metadata=metadata,
            timestamp=timestamp,
            memory_type=memory_type,
            source=self.source,
            ttl=ttl,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
        )

    def search(
        self, query: str, *, user_id: str | None = None, agent_id: str | None = None, **kw: Any
    ) -> list[SearchHit]:
        self.principal.require(KeyScope.READ)
        return self.memory.search(query, **self.principal.owner_kwargs(user_id, agent_id), **kw)

    def feedback(
        self,
        query: str,
        *,
        cited: list[str],
        used: list[str],
        wrong: list[str],
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> FeedbackResult:
        """A write: it records events and trains the owner's reranker. Another owner's
        memory id is `NotFoundError` (nothing recorded), as for every other by-id verb."""
        self.principal.require(KeyScope.WRITE)
        return self.memory.feedback(
            query,
            cited=cited,
            used=used,
            wrong=wrong,
            **self.principal.owner_kwargs(user_id, agent_id),
        )

    def get_all(
        self, *, user_id: str | None = None, agent_id: str | None = None, **kw: Any
    ) -> Page:
        self.principal.require(KeyScope.READ)
        return self.memory.get_all(**self.principal.owner_kwargs(user_id, agent_id), **kw)

    def get(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> MemoryItem:
        self.principal.require(KeyScope.READ)
        return self.memory.get(memory_id, **self.principal.by_id_kwargs(user_id, agent_id))

    def update(
        self,
        memory_id: str,
        text: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> MemoryItem:
        self.principal.require(KeyScope.WRITE)
        owner = self.principal.by_id_kwargs(user_id, agent_id)
        return self.memory.update(
            memory_id, text, metadata=metadata, reason=reason, source=self.source, **owner
        )

    def delete(
        self,
        memory_id: str,
        *,
        hard: bool = False,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> None:
        self.principal.require(KeyScope.WRITE)
        owner = self.principal.by_id_kwargs(user_id, agent_id)
        self.memory.delete(memory_id, hard=hard, reason=reason, source=self.source, **owner)

    def restore(
        self,
        memory_id: str,
        *,
        reason: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> MemoryItem:
        self.principal.require(KeyScope.WRITE)
        owner = self.principal.by_id_kwargs(user_id, agent_id)
        return self.memory.restore(memory_id, reason=reason, source=self.source, **owner)

    def history(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> list[Version]:
        self.principal.require(KeyScope.READ)
        return self.memory.history(memory_id, **self.principal.by_id_kwargs(user_id, agent_id))

    def stats(self, *, user_id: str | None = None, agent_id: str | None = None) -> CubeStats:
        self.principal.require(KeyScope.READ)
        return self.memory.stats(**self.principal.owner_kwargs(user_id, agent_id))

    def owners(self) -> list[str]:
        """The owners this caller may act for: its own, or every owner in the store."""
        self.principal.require(KeyScope.READ)
        if self.principal.owner is not None:
            return [self.principal.owner]
        return self.memory.owners()
