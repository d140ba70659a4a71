"""One answer, start to finish: pick the route (auto: the router), retrieve when the route
reads memories, run the route, and put the result and its timings together."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engram.answer.result import AnswerResult, AnswerTimings, UsedMemory
from engram.answer.router import RouteChoice, build_router, signals_of
from engram.answer.routes import ROUTES, AnswerJob
from engram.errors import NotFoundError

if TYPE_CHECKING:
    from engram.answer.models import ModelShelf
    from engram.answer.routes.base import RouteAnswer
    from engram.memory import Memory
    from engram.scope import Scope
    from engram.types import SearchHit


@dataclass(frozen=True)
class AnswerRequest:
    """A validated call of `Memory.answer`."""

    question: str
    user_id: str | None
    agent_id: str | None
    scope: Scope
    route: str
    k: int
    max_tokens: int
    model: str | None
    cubes: list[str] | None = None  # None: the owner's cube and every mount


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _used(hits: list[SearchHit], ordered: list[SearchHit]) -> list[UsedMemory]:
    place = {hit.id: i for i, hit in enumerate(ordered)}
    return [
        UsedMemory(**hit.model_dump(), position=place[hit.id]) for hit in hits if hit.id in place
    ]


def _result(
    request: AnswerRequest,
    choice: RouteChoice,
    hits: list[SearchHit],
    out: RouteAnswer,
    started: float,
    retrieval_s: float,
) -> AnswerResult:
    ttft = None
    if out.first_token is not None:
        ttft = _ms(out.first_token - started) - round(out.load_ms, 3)
    timings = AnswerTimings(
        retrieval_ms=_ms(retrieval_s),
        load_ms=round(out.load_ms, 3),
        kv_ms=round(out.kv_ms, 3),
        prefill_ms=None if out.prefill_ms is None else round(out.prefill_ms, 3),
        ttft_ms=ttft,
        generate_ms=round(out.generate_ms, 3),
        total_ms=_ms(time.perf_counter() - started),
    )
    return AnswerResult(
        answer=out.text,
        question=request.question,
        route=choice.route,
        reason=choice.reason,
        model=out.model,
        memories=_used(hits, out.ordered),
        prompt_tokens=out.prompt_tokens,
        cached_tokens=out.cached_tokens,
        completion_tokens=out.completion_tokens,
        timings=timings,
        kv=out.kv,
        adapter=out.adapter,
    )


def run_answer(memory: Memory, shelf: ModelShelf, request: AnswerRequest) -> AnswerResult:
    """Answer a validated request from the owner's memories."""
    started = time.perf_counter()
    owner = str(request.scope.owner)
    cube = memory.cube(request.scope)
    if cube is None:
        raise NotFoundError(f"no memories for {owner}")
    if request.route == "auto":
        choice = build_router(memory.config.answer).choose(signals_of(cube, request.question))
    else:
        choice = RouteChoice(request.route, "asked for")
    route = ROUTES[choice.route]()
    job = AnswerJob(
        request.question,
        owner,
        cube,
        memory.config,
        shelf,
        request.max_tokens,
        request.model,
        matched=choice.matched,
    )
    retrieval_s = 0.0
    if route.retrieves:
        searching = time.perf_counter()
        # a KV block records its sources in the owner's cube: the kv route reads only that
        cubes = [owner] if choice.route == "kv" else request.cubes
        job.hits = memory.search(
            request.question,
            user_id=request.user_id,
            agent_id=request.agent_id,
            k=request.k,
            cubes=cubes,
        )
        retrieval_s = time.perf_counter() - searching
        if not job.hits:
            raise NotFoundError(f"no active memories for {owner} to answer from")
    out = route.answer(job)
    return _result(request, choice, job.hits, out, started, retrieval_s)
