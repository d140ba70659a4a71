"""Read-only REST views of one owner's memory for the web page, under /v1/insights.

Counts by type, tier and state; a timeline by the time memories happened, with sessions;
retention strength, the forgetting curve and what gc would archive next (dry runs); the
owner's background jobs. Every route needs a `read` key and covers exactly one owner,
resolved from the key as everywhere else: a bound key reaches its own owner only (another
owner is 404, as a missing one), an admin key must name one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from engram.errors import ValidationError
from engram.lifecycle.report import GcAction, GcDecision, Tier
from engram.memory import Memory
from engram.scope import Scope
from engram.server.access import ScopedMemory
from engram.server.auth import Caller
from engram.server.errors import ERROR_RESPONSES
from engram.server.rest_ops import AgentQ, UserQ
from engram.server.routes import known_query
from engram.store.jobs import JobState
from engram.store.keys import KeyScope
from engram.types import MemoryItem, MemoryState

insights = APIRouter(
    prefix="/v1/insights", responses=ERROR_RESPONSES, dependencies=[Depends(known_query)]
)

PREVIEW_CHARS = 160
FORECAST_DAYS = (0, 7, 30, 90, 365)  # gc dry runs: now, then these many days ahead
CURVE_STEPS = 120
HORIZON_DAYS = 90  # how far ahead the page draws each memory's retrievability
MAX_REACH = 1000.0  # half-lives: beyond this every law is ~0
MAX_JOB_COUNT = 10_000  # job counts stop here (one bounded read per state)


# -- schemas ----------------------------------------------------------------------------


class TypeCount(BaseModel):
    active: int = 0
    archived: int = 0


class Overview(BaseModel):
    """One owner's memories counted by state, type and retention tier."""

    owner: str
    total: int = Field(description="Active and archived memories.")
    by_state: dict[str, int] = Field(description="active, archived.")
    by_type: dict[str, TypeCount] = Field(description="Memory type -> active / archived.")
    by_tier: dict[str, int] = Field(description="Active memories: working, episodic, long_term.")
    pinned: int = Field(description="Active memories gc never evicts.")
    sessions: int = Field(description="Distinct sessions (memories without one not counted).")
    first_at: datetime | None = Field(default=None, description="Earliest time happened.")
    last_at: datetime | None = Field(default=None, description="Latest time happened.")


class TimelinePoint(BaseModel):
    id: str
    at: datetime = Field(description="When it happened: provenance timestamp, else stored.")
    dated: Literal["provenance", "stored"] = Field(description="Where `at` comes from.")
    session_id: str | None
    type: str
    state: MemoryState
    preview: str = Field(description=f"The text, cut at {PREVIEW_CHARS} characters.")


class SessionBand(BaseModel):
    session_id: str | None = Field(description="None: the memories without a session.")
    start: datetime
    end: datetime
    count: int
    by_type: dict[str, int]


class Timeline(BaseModel):
    """Memories by the time they happened, and each session as a band from first to last."""

    owner: str
    start: datetime | None
    end: datetime | None
    total: int
    truncated: bool = Field(description="Only the latest `limit` points are listed.")
    sessions: list[SessionBand] = Field(description="Oldest first, over every memory.")
    points: list[TimelinePoint] = Field(description="Oldest first.")


class CurvePoint(BaseModel):
    half_lives: float = Field(description="Time since last use, in units of strength.")
    retrievability: float


class RetentionPoint(BaseModel):
    id: str
    preview: str
    type: str
    tier: Tier
    pinned: bool
    strength_days: float = Field(description="Half-life in days.")
    retrievability: float
    importance: float
    recall_count: int
    days_since_use: float = Field(description="Since the last recall, else since stored.")
    half_lives: float = Field(description="days_since_use / strength_days.")


class Eviction(BaseModel):
    id: str
    preview: str
    type: str
    tier: Tier
    rule: str = Field(description="expires_at, ttl, forgotten, capacity.")
    reason: str
    retrievability: float


class Forecast(BaseModel):
    days: int = Field(description="Days from now.")
    at: datetime
    evict: list[Eviction] = Field(description="What a gc run then would archive.")
    promote: int
    displace: int


class Retention(BaseModel):
    """Strength and retrievability of the active memories on the decay law's curve, and
    what gc would archive now and in the coming days (dry runs: nothing changes)."""

    owner: str
    at: datetime
    decay: str = Field(description="The decay law (retention.decay).")
    initial_strength_days: float
    min_retrievability: float | None = Field(description="The owner's '*' forgetting threshold.")
    total: int = Field(description="Active memories.")
    horizon_days: int = Field(description="The curve reaches every listed memory this far ahead.")
    curve: list[CurvePoint] = Field(
        description="R against half-lives since last use: one curve for every strength (every "
        "law has R(t) = f(t / S)), sampled densely near 0, far enough for `horizon_days`."
    )
    memories: list[RetentionPoint] = Field(description="Weakest first (R x importance).")
    forecast: list[Forecast]


class JobRow(BaseModel):
    id: int
    session_id: str | None
    extractor: str
    state: JobState
    attempts: int
    max_attempts: int
    error: str | None
    result: dict[str, object] | None
    created_at: datetime
    updated_at: datetime


class Jobs(BaseModel):
    """The owner's extraction jobs, newest first, and how many are in each state."""

    owner: str
    counts: dict[str, int] = Field(description=f"Jobs per state (at most {MAX_JOB_COUNT}).")
    jobs: list[JobRow]


# -- owner resolution -------------------------------------------------------------------


def whole_owner(caller: ScopedMemory, user_id: str | None, agent_id: str | None) -> Scope:
    """The one owner these views cover: from the key as for every route, never narrowed
    to an agent of a user (the counts are the owner's)."""
    caller.principal.require(KeyScope.READ)
    owner = caller.principal.owner_kwargs(user_id, agent_id)
    scope = Scope.of(owner.get("user_id"), owner.get("agent_id"))
    if scope.agent_filter is not None:
        raise ValidationError("insights cover a whole owner: give user_id or agent_id, not both")
    return scope


def preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def happened(item: MemoryItem) -> tuple[datetime, Literal["provenance", "stored"]]:
    stamp = item.provenance.timestamp
    return (item.created_at, "stored") if stamp is None else (stamp, "provenance")


def owner_items(memory: Memory, scope: Scope, include_archived: bool) -> list[MemoryItem]:
    return list(
        memory.iter_all(
            user_id=scope.user_id, agent_id=scope.agent_id, include_archived=include_archived
        )
    )


# -- overview ---------------------------------------------------------------------------


@insights.get("/overview", response_model=Overview, summary="Counts by type, tier, state")
def overview(caller: Caller, user_id: UserQ = None, agent_id: AgentQ = None) -> Overview:
    """The owner's memories by state, type and retention tier; sessions; time span."""
    scope = whole_owner(caller, user_id, agent_id)
    memory, owner = caller.memory, str(scope.owner)
    items = owner_items(memory, scope, include_archived=True)
    by_type: dict[str, TypeCount] = defaultdict(TypeCount)
    for item in items:
        counts = by_type[item.type]
        if item.state is MemoryState.ACTIVE:
            counts.active += 1
        else:
            counts.archived += 1
    cube = memory.cube(scope)
    rows = [] if cube is None else memory.store.retention_rows(cube.id)
    tiers = Counter(row.tier for row in rows)
    times = [happened(item)[0] for item in items]
    active = sum(c.active for c in by_type.values())
    return Overview(
        owner=owner,
        total=len(items),
        by_state={"active": active, "archived": len(items) - active},
        by_type=dict(sorted(by_type.items())),
        by_tier={tier.value: tiers.get(tier.value, 0) for tier in Tier},
        pinned=sum(1 for row in rows if row.pinned),
        sessions=len({i.provenance.session_id for i in items} - {None}),
        first_at=min(times, default=None),
        last_at=max(times, default=None),
    )


# -- timeline ---------------------------------------------------------------------------


def _point(item: MemoryItem) -> TimelinePoint:
    at, dated = happened(item)
    return TimelinePoint(
        id=item.id,
        at=at,
        dated=dated,
        session_id=item.provenance.session_id,
        type=item.type,
        state=item.state,
        preview=preview(item.memory),
    )


def _bands(points: list[TimelinePoint]) -> list[SessionBand]:
    grouped: dict[str | None, list[TimelinePoint]] = defaultdict(list)
    for point in points:
        grouped[point.session_id].append(point)
    bands = [
        SessionBand(
            session_id=session,
            start=members[0].at,
            end=members[-1].at,
            count=len(members),
            by_type=dict(Counter(p.type for p in members)),
        )
        for session, members in grouped.items()
    ]
    return sorted(bands, key=lambda b: (b.start, b.session_id or ""))


@insights.get("/timeline", response_model=Timeline, summary="Memories by when they happened")
def timeline(
    caller: Caller,
    user_id: UserQ = None,
    agent_id: AgentQ = None,
    include_archived: Annotated[bool, Query(description="Archived memories too.")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Most points listed.")] = 2000,
) -> Timeline:
    """Each memory at the time it happened (its provenance timestamp, else when stored);
    each session as a band from its first to its last memory."""
    scope = whole_owner(caller, user_id, agent_id)
    items = owner_items(caller.memory, scope, include_archived)
    points = sorted((_point(item) for item in items), key=lambda p: (p.at, p.id))
    return Timeline(
        owner=str(scope.owner),
        start=points[0].at if points else None,
        end=points[-1].at if points else None,
        total=len(points),
        truncated=len(points) > limit,
        sessions=_bands(points),
        points=points[-limit:],
    )


# -- retention --------------------------------------------------------------------------


def _curve(memory: Memory, points: list[RetentionPoint]) -> list[CurvePoint]:
    law, strength = memory.lifecycle.law, memory.lifecycle.config.initial_strength_days
    ahead = ((p.days_since_use + HORIZON_DAYS) / p.strength_days for p in points)
    reach = min(max([4.0, *ahead]), MAX_REACH)
    xs = [reach * (step / CURVE_STEPS) ** 2 for step in range(CURVE_STEPS + 1)]
    return [
        CurvePoint(half_lives=x, retrievability=float(law.retrievability(x * strength, strength)))
        for x in xs
    ]


def _retention_points(memory: Memory, scope: Scope, at: datetime) -> list[RetentionPoint]:
    cube = memory.cube(scope)
    if cube is None:
        return []
    texts = {i.id: i.memory for i in owner_items(memory, scope, include_archived=False)}
    planner = memory.lifecycle.planner(cube.owner, cube.id, at)
    points = []
    for row in memory.store.retention_rows(cube.id):
        s = planner.score(row)
        since = (at - (row.last_recalled_at or row.created_at)).total_seconds() / 86400.0
        if not (math.isfinite(s.retrievability) and s.strength > 0):
            continue
        points.append(
            RetentionPoint(
                id=row.id,
                preview=preview(texts.get(row.id, "")),
                type=row.type,
                tier=Tier(row.tier),
                pinned=row.pinned,
                strength_days=s.strength,
                retrievability=s.retrievability,
                importance=s.importance,
                recall_count=row.recall_count,
                days_since_use=max(since, 0.0),
                half_lives=max(since, 0.0) / s.strength,
            )
        )
    return sorted(points, key=lambda p: (p.retrievability * p.importance, p.id))


def _forecast(
    memory: Memory, scope: Scope, at: datetime, previews: dict[str, str]
) -> list[Forecast]:
    out = []
    for days in FORECAST_DAYS:
        when = at + timedelta(days=days)
        report = memory.gc(dry_run=True, at=when, user_id=scope.user_id, agent_id=scope.agent_id)
        out.append(
            Forecast(
                days=days,
                at=when,
                evict=[
                    _eviction(d, previews) for d in report.decisions if d.action is GcAction.EVICT
                ],
                promote=report.promoted,
                displace=report.displaced,
            )
        )
    return out


def _eviction(decision: GcDecision, previews: dict[str, str]) -> Eviction:
    return Eviction(
        id=decision.id,
        preview=previews.get(decision.id, ""),
        type=decision.type,
        tier=decision.tier,
        rule=decision.rule,
        reason=decision.reason,
        retrievability=decision.retrievability,
    )


@insights.get("/retention", response_model=Retention, summary="Strength and what gc archives")
def retention(
    caller: Caller,
    user_id: UserQ = None,
    agent_id: AgentQ = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Most memories listed.")] = 500,
) -> Retention:
    """The active memories on the forgetting curve, weakest first, and gc dry runs now and
    7, 30, 90 and 365 days ahead (what each would archive, and why)."""
    scope = whole_owner(caller, user_id, agent_id)
    memory, at = caller.memory, datetime.now(UTC)
    points = _retention_points(memory, scope, at)
    listed = points[:limit]
    policy = memory.retention_policy(user_id=scope.user_id, agent_id=scope.agent_id)
    return Retention(
        owner=str(scope.owner),
        at=at,
        decay=memory.lifecycle.config.decay,
        initial_strength_days=memory.lifecycle.config.initial_strength_days,
        min_retrievability=policy.min_retrievability,
        total=len(points),
        horizon_days=HORIZON_DAYS,
        curve=_curve(memory, listed),
        memories=listed,
        forecast=_forecast(memory, scope, at, {p.id: p.preview for p in points}),
    )


# -- jobs -------------------------------------------------------------------------------


def _job_row(job: object) -> JobRow:
    return JobRow.model_validate(job, from_attributes=True)


@insights.get("/jobs", response_model=Jobs, summary="Background jobs and their state")
def jobs(
    caller: Caller,
    user_id: UserQ = None,
    agent_id: AgentQ = None,
    state: Annotated[
        list[JobState] | None, Query(description="Only jobs in these states (repeatable).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most jobs listed.")] = 100,
) -> Jobs:
    """The owner's extraction jobs, newest first (extractor, session, state, attempts,
    error, result), and how many are queued, running, done and failed."""
    scope = whole_owner(caller, user_id, agent_id)
    memory, user, agent = caller.memory, scope.user_id, scope.agent_id
    counts = {
        s.value: len(memory.jobs(state=s, limit=MAX_JOB_COUNT, user_id=user, agent_id=agent))
        for s in JobState
    }
    listed = memory.jobs(state=state or None, limit=limit, user_id=user, agent_id=agent)
    return Jobs(owner=str(scope.owner), counts=counts, jobs=[_job_row(j) for j in listed])
