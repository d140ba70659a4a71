"""Compose: an owner reads other owners' cubes, mounted read-only beside its own, in one
search or answer (docs/compose.md). `Memory.mount`, `unmount` and `mounts` live here,
mixed into Memory so memory.py stays small; `Memory.search` runs `search_cubes`.

Each cube is searched on its own (its own pipeline statistics, feedback weights and
snapshot) and the ranked lists are merged by `merge_hits`. A mounted cube is only read:
no access counts, no expiry on search, no query cached in its owner's embedder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engram.errors import NotFoundError, ValidationError
from engram.scope import Scope, check_id, owner_args
from engram.types import Mount, SearchHit

if TYPE_CHECKING:
    from engram.config import EngramConfig
    from engram.cube import MemCube
    from engram.embed import Embedder
    from engram.lifecycle import Lifecycle
    from engram.store.base import MemoryFilter, Store
    from engram.text.retrieval import Retriever

MAX_MOUNTS = 16  # each mounted cube is one more search per query


def parse_cube(value: Any, what: str = "cube") -> str:
    """A cube by its owner, 'user:alice' or 'agent:team', checked as owner ids are."""
    return Scope.parse(value, what)


def unknown_cube(cube: str, owner: str) -> str:
    """The one message for a cube that is absent, not mounted, or not the caller's to read:
    none of them tells the caller more than the others."""
    return f"no cube {cube} for {owner}"


def parse_cubes(values: Any) -> list[str]:
    """`cubes` of search and answer: a non-empty list of owners, each once."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError("cubes must be a list of owners such as ['agent:team']")
    names = list(dict.fromkeys(parse_cube(v, "each of cubes") for v in values))
    if not names:
        raise ValidationError("cubes must name at least one cube (leave it out for all)")
    if len(names) > MAX_MOUNTS + 1:
        raise ValidationError(f"cubes names at most {MAX_MOUNTS + 1} cubes")
    return names


def merge_hits(lists: Sequence[Sequence[SearchHit]], k: int) -> list[SearchHit]:
    """The best `k` of several cubes' ranked lists. Ranking scores are standardised per
    cube, so they do not compare across cubes; `relevance` (the query's cosine under the
    one embedder) does. Each list keeps its cube's order, and at every step the list whose
    next hit has the higher relevance gives the next hit (ties: the earlier list, the
    owner's own cube first)."""
    heads = [0] * len(lists)
    merged: list[SearchHit] = []
    while len(merged) < k:
        best: int | None = None
        for i, hits in enumerate(lists):
            if heads[i] < len(hits) and (
                best is None or hits[heads[i]].relevance > lists[best][heads[best]].relevance
            ):
                best = i
        if best is None:
            break
        merged.append(lists[best][heads[best]])
        heads[best] += 1
    return merged


class ComposeVerbs:
    """Memory's mount verbs and the search over an owner's cube and its mounts."""

    if TYPE_CHECKING:
        config: EngramConfig
        store: Store
        embedder: Embedder
        lifecycle: Lifecycle
        _lock: threading.Lock

        def cube(self, scope: Scope, create: bool = False) -> MemCube | None: ...

    def mount(self, cube: str, *, user_id: str | None = None, agent_id: str | None = None) -> Mount:
        """Mount another owner's cube (e.g. 'agent:team') read-only: the owner's search
        and answer read it too, each hit naming its `cube`. Mounting again is a no-op."""
        owner = str(Scope.of(user_id, agent_id).owner)
        name = parse_cube(cube)
        if name == owner:
            raise ValidationError(f"{owner} always reads its own cube; mount another owner's")
        with self.store.transaction():  # an erasure of `name` cannot slip in between
            if self.store.cube_id(name) is None:
                raise NotFoundError(unknown_cube(name, owner))
            mounted = dict(self.store.mounts(owner))
            if name not in mounted:
                if len(mounted) >= MAX_MOUNTS:
                    raise ValidationError(f"{owner} mounts {MAX_MOUNTS} cubes, the most allowed")
                mounted[name] = datetime.now(UTC)
                self.store.mount(owner, name, mounted[name])
        return Mount(owner=owner, cube=name, mounted_at=mounted[name])

    def unmount(
        self, cube: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> Mount:
        """Stop reading a mounted cube; returns the mount removed."""
        owner = str(Scope.of(user_id, agent_id).owner)
        name = parse_cube(cube)
        with self.store.transaction():
            mounted = dict(self.store.mounts(owner))
            if name not in mounted or not self.store.unmount(owner, name):
                raise NotFoundError(unknown_cube(name, owner))
        return Mount(owner=owner, cube=name, mounted_at=mounted[name])

    def mounts(self, *, user_id: str | None = None, agent_id: str | None = None) -> list[Mount]:
        """The cubes an owner mounts, in the order mounted."""
        owner = str(Scope.of(user_id, agent_id).owner)
        return [
            Mount(owner=owner, cube=cube, mounted_at=at) for cube, at in self.store.mounts(owner)
        ]

    def composed(self, owner: str, cubes: Iterable[str] | None) -> list[str]:
        """The cubes a search of `owner` reads, own first, then mounts in mount order:
        all of them, or those `cubes` names (each the owner or one of its mounts)."""
        check_id(owner, "owner")
        mounted = [cube for cube, _ in self.store.mounts(owner)]
        everyone = [owner, *mounted]
        if cubes is None:
            return everyone
        named = parse_cubes(cubes)
        for name in named:
            if name not in everyone:
                raise NotFoundError(unknown_cube(name, owner))
        return [name for name in everyone if name in named]

    def search_cubes(
        self,
        scope: Scope,
        cubes: Iterable[str] | None,
        query: str,
        k: int,
        flt: MemoryFilter,
        retriever: Retriever,
    ) -> list[SearchHit]:
        """`Memory.search` after validation: each chosen cube searched for `k` hits, then
        merged (`merge_hits`). Session and agent narrowing apply to the owner's own cube;
        types, times and metadata conditions to every cube."""
        owner = str(scope.owner)
        candidates = self.config.search.candidates
        lists = []
        for name in self.composed(owner, cubes):
            if name == owner:
                own = self.cube(scope)
                if own is None:
                    continue
                if self.config.retention.expire_on_search:
                    self.lifecycle.expire_due(own.id)
                lists.append(own.search(query, k, flt, retriever, candidates))
                continue
            mounted = self.cube(Scope.of(**owner_args(name)))
            if mounted is None:  # its memories were erased after the owner chose it
                continue
            # read only: the reader's embedder (its cache), no access counts, no tiers
            reader = replace(
                mounted,
                embedder=self.embedder.for_owner(owner),
                access=None,
                lifecycle=None,
                derived=(),
            )
            shared = replace(flt, session_id=None, agent_id=None)
            lists.append(reader.search(query, k, shared, retriever, candidates))
        return merge_hits(lists, k)
