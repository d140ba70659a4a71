"""An extractive summary of each session (RMM's session granularity): the turns closest
to the session's centroid, kept diverse by MMR, quoted in order under the session's date."""

from __future__ import annotations

from engram.extract.base import Derived, ExtractionContext, Extractor, Plan
from engram.extract.extractive import day, mmr, quote
from engram.types import MemoryType


class SessionSummary(Extractor):
    name = "session-summary"
    needs_session = True

    def plan(self, ctx: ExtractionContext) -> Plan:
        if ctx.session_id is None:
            return Plan(note="no session")
        turns = ctx.memories()
        if len(turns) < ctx.config.session_min_turns:
            return Plan(note=f"{len(turns)} turns, fewer than {ctx.config.session_min_turns}")
        picked = [turns.items[i] for i in mmr(turns.vectors, ctx.config.summary_turns)]
        speakers = list(dict.fromkeys(t.provenance.name for t in turns.items if t.provenance.name))
        sid = ctx.session_id
        head = sid.replace("_", " ") if sid.lower().startswith("session") else f"Session {sid}"
        when = day(turns.items[0])
        if when:
            head += f" on {when}"
        if speakers:
            head += f" ({', '.join(speakers)})"
        text = f"{head}: " + " … ".join(quote(t) for t in picked)
        derived = Derived(
            text=text,
            type=MemoryType.SUMMARY.value,
            sources=picked,
            key=f"{self.name}:{ctx.session_id}",
            metadata={"granularity": "session", "session_turns": len(turns)},
            occurred_at=turns.items[0].provenance.timestamp,
            session_id=ctx.session_id,
        )
        return Plan(derived=[derived])
