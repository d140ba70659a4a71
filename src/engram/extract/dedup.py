"""Near-duplicate merging (Adapt-∞'s dedup, made reversible): derived memories of the same
type whose vectors are at least `dedup_threshold` alike are merged into the oldest one.
The representative gets a 'merge' version listing every source; each duplicate is
archived with a 'merge' version naming it — its text stays in history, restorable."""

from __future__ import annotations

import numpy as np

from engram.extract.base import ExtractionContext, Extractor, Plan, Retirement, Revision
from engram.extract.base import source_ids as turn_ids


class NearDuplicates(Extractor):
    name = "dedup"
    scope = "cube"

    def plan(self, ctx: ExtractionContext) -> Plan:
        found = ctx.memories(tuple(ctx.config.dedup_types), session=False)
        if len(found) < 2:
            return Plan(note="fewer than two candidates")
        sims = found.vectors @ found.vectors.T
        types = np.array([item.type for item in found.items], dtype=object)
        merged: set[int] = set()
        plan = Plan()
        threshold = ctx.config.dedup_threshold
        for i, rep in enumerate(found.items):  # key order: the oldest is the representative
            if i in merged:
                continue
            close = np.flatnonzero((sims[i] >= threshold) & (types == rep.type))
            dups = [int(j) for j in close if j > i and int(j) not in merged]
            if not dups:
                continue
            merged.update(dups)
            group = [found.items[j] for j in dups]
            ids = [d.id for d in group]
            metadata = {
                **rep.metadata,
                "source_ids": turn_ids([rep, *group]),
                "merged_ids": [*rep.metadata.get("merged_ids", []), *ids],
            }
            best = float(max(sims[i, j] for j in dups))
            reason = f"merged {len(ids)} near-duplicate(s) {', '.join(ids)} (cosine ≥ {best:.3f})"
            plan.revisions.append(Revision(rep, reason, metadata=metadata, event="merge"))
            for j, dup in zip(dups, group, strict=True):
                why = f"near-duplicate of {rep.id} (cosine {sims[i, j]:.3f}); merged into it"
                plan.retirements.append(Retirement(dup, why, event="merge"))
        if not plan:
            plan.note = "no near-duplicates"
        return plan
