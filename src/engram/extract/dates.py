"""Events with absolute dates: a turn that says when something happened ("yesterday",
"last Friday", "two weeks ago", "on 9 May, 2023") becomes an event memory dated by the
turn's own time — "On 7 May 2023, Caroline: I went to a support group yesterday."."""

from __future__ import annotations

from datetime import UTC, datetime

from engram.extract.base import Derived, ExtractionContext, Extractor, Plan
from engram.extract.extractive import quote
from engram.extract.timeref import resolve
from engram.types import MemoryType


class DateEvents(Extractor):
    name = "dates"

    def plan(self, ctx: ExtractionContext) -> Plan:
        turns = ctx.memories()
        wanted = None if ctx.new_ids is None else set(ctx.new_ids)
        plan = Plan()
        for item in turns.items:
            said = item.provenance.timestamp
            if said is None or (wanted is not None and item.id not in wanted):
                continue
            for i, ref in enumerate(resolve(item.memory, said.date())):
                plan.derived.append(
                    Derived(
                        text=f"{ref.describe()}, {quote(item)}",
                        type=MemoryType.EVENT.value,
                        sources=[item],
                        key=f"{self.name}:{item.id}:{i}",
                        metadata={
                            "date": ref.start.isoformat(),
                            "date_end": ref.end.isoformat(),
                            "expression": ref.expression,
                            "approximate": ref.approximate,
                        },
                        occurred_at=datetime(
                            ref.start.year, ref.start.month, ref.start.day, tzinfo=UTC
                        ),
                        session_id=item.provenance.session_id,
                    )
                )
        if not plan:
            plan.note = "no dated expressions"
        return plan
