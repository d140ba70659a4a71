"""`confirmed-to-adapter`: long-lived, repeatedly confirmed facts whose text has stopped
changing are queued for the owner's next adapter batch (trained with `lora.safeguards`).

A memory qualifies when it is at least `min_age_days` old, confirmed (cited/used feedback
or recalls) at least `min_confirmations` times and never marked wrong, its text unchanged
for `stable_days` with at most `max_text_changes` changes, and no adapter version has
learned it (a continued adapter never relearns a memory id). Fewer than `min_batch` such
facts wait for a later plan; a memory too short to make a fact never goes."""

from __future__ import annotations

from engram.errors import ValidationError
from engram.parametric.examples import fact_from_memory
from engram.scheduler.move import Move, Place
from engram.scheduler.policy import SchedulePolicy
from engram.scheduler.registry import register_policy
from engram.scheduler.usage import MemoryUse, Usage


@register_policy
class ConfirmedToAdapter(SchedulePolicy):
    """Stable, confirmed facts → the owner's LoRA adapter (parametric memory)."""

    name = "confirmed-to-adapter"

    def plan(self, usage: Usage, free: list[MemoryUse]) -> list[Move]:
        cfg = usage.config.adapter
        chosen = []
        for u in free:
            age = usage.days_since(u.item.created_at)
            stable = usage.days_since(u.text.since)
            if (
                age >= cfg.min_age_days
                and u.confirmations >= cfg.min_confirmations
                and u.wrong == 0
                and stable >= cfg.stable_days
                and u.text.changes <= cfg.max_text_changes
                and u.id not in usage.learned
                and _is_fact(u)
            ):
                why = (
                    f"confirmed {u.confirmations}x, {age:.0f} d old, text stable "
                    f"{stable:.0f} d ({u.text.changes} changes)"
                )
                chosen.append((u, why))
        if len(chosen) < cfg.min_batch:
            return []
        chosen.sort(key=lambda c: (-c[0].confirmations, c[0].id))
        return [
            Move(
                ids=[u.id],
                from_tier=Place.TEXT,
                to_tier=Place.PARAMETRIC,
                rule=self.name,
                reason=why,
                score=float(u.confirmations),
            )
            for u, why in chosen
        ]


def _is_fact(use: MemoryUse) -> bool:
    """Whether the adapter can be taught the memory (a text too short is no fact)."""
    try:
        fact_from_memory(use.item)
    except ValidationError:
        return False
    return True
