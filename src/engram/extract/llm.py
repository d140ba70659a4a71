"""The LLM path (mem0-style, made safe): the model proposes memories from a session's new
turns; each proposal is decided against the most similar existing memories — ADD, UPDATE
(a new version; the old text stays in history), DELETE (the contradicted memory is archived
with the reason and the contradicting turns; the new one is added) or NONE. Every answer
is schema-checked; the job's whole plan is applied in one transaction or not at all."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from engram.extract.base import (
    Derived,
    ExtractionContext,
    ExtractionError,
    Extractor,
    Plan,
    Retirement,
    Revision,
    source_ids,
)
from engram.extract.prompts import (
    Candidate,
    Decision,
    Extraction,
    ask,
    check_decision,
    check_extraction,
    decision_messages,
    extraction_messages,
)
from engram.store.base import MemoryFilter
from engram.types import MemoryItem, MemoryType

log = logging.getLogger(__name__)

KINDS = (MemoryType.FACT.value, MemoryType.PREFERENCE.value, MemoryType.EVENT.value)


class LLMExtractor(Extractor):
    name = "llm"
    source = "extract:llm"
    needs_llm = True

    def plan(self, ctx: ExtractionContext) -> Plan:
        if ctx.llm is None:
            raise ExtractionError("the 'llm' extractor needs llm.provider to be configured")
        turns = ctx.memories().items
        if ctx.new_ids is not None:
            wanted = set(ctx.new_ids)
            turns = [t for t in turns if t.id in wanted]
        size = ctx.config.llm_turns
        proposals: list[tuple[Candidate, list[MemoryItem]]] = []
        for start in range(0, len(turns), size):
            chunk = turns[start : start + size]
            answer = ask(
                ctx.llm,
                extraction_messages(chunk),
                Extraction,
                check_extraction,
                len(chunk),
                ctx.config.answer_retries,
                "extraction",
            )
            for c in answer.memories:
                proposals.append((c, [chunk[t - 1] for t in c.turns] or chunk))
        if not proposals:
            return Plan(note="the model proposed no memories")
        return self._decide(ctx, proposals)

    def _decide(
        self, ctx: ExtractionContext, proposals: list[tuple[Candidate, list[MemoryItem]]]
    ) -> Plan:
        assert ctx.llm is not None
        vectors = ctx.embedder.embed([c.text for c, _ in proposals])
        plan, touched = Plan(), set[str]()
        flt = MemoryFilter(types=KINDS)
        for (candidate, sources), vector in zip(proposals, vectors, strict=True):
            hits = ctx.store.dense(ctx.cube, vector, ctx.config.llm_neighbors, flt)
            found = ctx.store.by_keys(ctx.cube, [h.key for h in hits])
            neighbours = [found[h.key] for h in hits if h.key in found]
            decision = Decision(action="ADD", reason="no similar memory exists")
            if neighbours:
                decision = ask(
                    ctx.llm,
                    decision_messages(candidate, neighbours),
                    Decision,
                    check_decision,
                    len(neighbours),
                    ctx.config.answer_retries,
                    "decision",
                )
            target = neighbours[decision.target - 1] if decision.target else None
            if target is not None and target.id in touched and decision.action != "NONE":
                log.info("a second decision on memory %s in one job: added instead", target.id)
                decision, target = Decision(action="ADD", reason=decision.reason), None
            self._apply(plan, ctx, candidate, sources, decision, target)
            if target is not None:
                touched.add(target.id)
        if not plan:
            plan.note = "every proposal was already known"
        return plan

    def _apply(
        self,
        plan: Plan,
        ctx: ExtractionContext,
        candidate: Candidate,
        sources: list[MemoryItem],
        decision: Decision,
        target: MemoryItem | None,
    ) -> None:
        turns = ", ".join(source_ids(sources))
        model = ctx.llm.name if ctx.llm else None
        if decision.action == "NONE":
            return
        if decision.action == "UPDATE" and target is not None:
            metadata = {
                **target.metadata,
                "source_ids": source_ids([target, *sources]),
                "source_memory_ids": [
                    *target.metadata.get("source_memory_ids", []),
                    *(s.id for s in sources),
                ],
                "model": model,
            }
            reason = f"{decision.reason} (from turns {turns})"
            plan.revisions.append(Revision(target, reason, text=decision.text, metadata=metadata))
            return
        when = candidate.date
        plan.derived.append(
            Derived(
                text=candidate.text,
                type=candidate.type,
                sources=sources,
                metadata={
                    "model": model,
                    **({"date": when.isoformat()} if when else {}),
                },
                occurred_at=datetime(when.year, when.month, when.day, tzinfo=UTC) if when else None,
                session_id=ctx.session_id,
            )
        )
        if decision.action == "DELETE" and target is not None:
            reason = (
                f"contradicted by {candidate.text!r} (turns {turns}, extract:llm): "
                f"{decision.reason}"
            )
            plan.retirements.append(Retirement(target, reason))
