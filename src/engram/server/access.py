"""Who is calling and what they may touch: the one place REST and MCP decide scope.

A `Principal` is the caller (an API key, or the local user under `--no-auth` / stdio MCP).
`ScopedMemory` is the `Memory` as that caller sees it: every verb resolves the owner from
the caller's key, never from the client alone, and an owner the key may not address is
reported exactly as a missing memory (`NotFoundError`: 404, existence never confirmed).
A cube its owner mounts is read only when the key may read it (its own owner, a cube it
was granted, or any for an unbound key); one it may not is reported as not mounted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engram.compose import parse_cube, parse_cubes, unknown_cube
from engram.errors import EngramError, NotFoundError
from engram.memory import Memory
from engram.ops import Operation
from engram.scope import OwnerKwargs, Scope, owner_args
from engram.store.keys import ApiKey, KeyScope
from engram.types import CubeStats, Mount


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
    reads: frozenset[str] = frozenset()  # other owners' cubes it may read where mounted

    @classmethod
    def of_key(cls, key: ApiKey) -> Principal:
        return cls(
            scope=key.scope,
            owner=key.owner,
            key_id=key.id,
            default_owner=key.owner,
            reads=frozenset(key.reads),
        )

    @classmethod
    def local(cls, default_owner: str | None = None) -> Principal:
        """No authentication (`--no-auth`, stdio MCP): the local user owns the whole store."""
        return cls(scope=KeyScope.ADMIN, default_owner=default_owner)

    @property
    def name(self) -> str:
        """For rate limits and logs: the key id, or 'local'."""
        return self.key_id or "local"

    def may_read(self, cube: str) -> bool:
        """Whether this caller may read the cube of owner `cube`."""
        return self.owner is None or cube == self.owner or cube in self.reads

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

    def call(self, op: Operation, values: Mapping[str, Any]) -> Any:
        """Run `op` for this caller: its key scope checked, the owner resolved from the
        key (or checked against it), provenance marked with this surface's name. Every REST
        route and MCP tool of the operation table comes through here."""
        self.principal.require(KeyScope.WRITE if op.write else KeyScope.READ)
        kwargs = op.arguments(values)
        user_id, agent_id = kwargs.pop("user_id", None), kwargs.pop("agent_id", None)
        if op.target == "memory":
            owner = self.principal.by_id_kwargs(user_id, agent_id)
        else:
            owner = self.principal.owner_kwargs(user_id, agent_id)
        if op.provenance:
            kwargs["source"] = self.source
        if self.principal.owner is not None:
            self._readable(op, kwargs, str(Scope.of(**owner).owner))
        result = getattr(self.memory, op.method)(**kwargs, **owner)
        if isinstance(result, list) and all(isinstance(m, Mount) for m in result):
            return [m for m in result if self.principal.may_read(m.cube)]
        return result

    def _readable(self, op: Operation, kwargs: dict[str, Any], owner: str) -> None:
        """Hold a bound key's call to the cubes it may read: a cube it names must be one
        (else reported as Memory reports a cube not mounted), and `cubes` left out means
        the readable ones of the owner's own and mounted cubes."""
        for p in op.params:
            value = kwargs.get(p.name)
            if p.kind == "cube":
                cube = parse_cube(value)
                if not self.principal.may_read(cube):
                    raise NotFoundError(unknown_cube(cube, owner))
            elif p.kind == "cubes" and value is None:
                composed = self.memory.composed(owner, None)
                kwargs[p.name] = [c for c in composed if self.principal.may_read(c)]
            elif p.kind == "cubes":
                for cube in parse_cubes(value):
                    if not self.principal.may_read(cube):
                        raise NotFoundError(unknown_cube(cube, owner))

    def stats(self, *, user_id: str | None = None, agent_id: str | None = None) -> CubeStats:
        self.principal.require(KeyScope.READ)
        return self.memory.stats(**self.principal.owner_kwargs(user_id, agent_id))

    def owners(self) -> list[str]:
        """The owners this caller may act for: its own, or every owner in the store."""
        self.principal.require(KeyScope.READ)
        if self.principal.owner is not None:
            return [self.principal.owner]
        return self.memory.owners()
