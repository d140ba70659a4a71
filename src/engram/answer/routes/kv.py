"""The kv route: the same prompt as the text route, but the context (instructions and
memories) is read from KV blocks of the owner's activation tier.

With `kv.compose` each memory has its own block, built on its first use
and recorded as built from that memory (erasing it deletes the block); a prompt over any
memories in any order is assembled from them (engram.activation.compose). By default, a
block holds one whole context: found by its tokens (content-addressed, so any change of a
memory or of the order is a new block), on a miss built, compressed with `kv.method`,
stored and recorded as built from those memories. A whole-context block that is stored
(e.g. by `engram kv build`) is used first either way."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from engram.answer.result import KVUse
from engram.answer.routes.base import AnswerJob, AnswerRoute, RouteAnswer, clean, local_prompt
from engram.tiers import ACTIVATION

if TYPE_CHECKING:
    from engram.activation.block import KVBlock
    from engram.activation.compress.base import Compressor
    from engram.activation.tier import ActivationTier
    from engram.answer.models import LoadedModel
    from engram.answer.prompt import AnswerPrompt
    from engram.types import MemoryItem


def _tier(job: AnswerJob) -> ActivationTier:
    return job.cube.tiers[ACTIVATION]  # type: ignore[return-value]


def _prefix_block(
    tier: ActivationTier,
    loaded: LoadedModel,
    ids: list[int],
    compressor: Compressor | None,
    meta: dict[str, Any],
    sources: list[tuple[str, int]],
) -> tuple[KVBlock, str, bool]:
    """The block of `ids` read from the start of a prompt: stored, or built (compressed),
    stored and recorded as built from `sources` now. Returns it, its key, built now."""
    from engram.activation.build import build_kv

    store = tier.kv.store()
    method = compressor.spec() if compressor is not None else []
    key = store.key_for(loaded.fingerprint, method, ids)
    found = store.find(key, loaded.fingerprint, loaded.tokenizer_hash)
    if found is not None:
        return found, key, False
    meta = {"owner": tier.owner, "model": loaded.name, **meta}
    block = build_kv(loaded.model, ids, loaded.tokenizer, compressor, meta, loaded.fingerprint)
    return block, tier.keep(block, sources), True


def _whole(job: AnswerJob, loaded: LoadedModel, prompt: AnswerPrompt) -> tuple[KVBlock, KVUse]:
    """The block of the prompt's whole context: stored, or built and stored now."""
    from engram.activation.compress import parse_method

    ids = [hit.id for hit in prompt.ordered]
    versions = [(item.id, item.version) for item in (job.cube.get(i) for i in ids)]
    block, key, built = _prefix_block(
        _tier(job),
        loaded,
        prompt.context_ids,
        parse_method(job.config.kv.method),
        {"memory_ids": ids},
        versions,
    )
    use = KVUse(key=key, hit=not built, reused_tokens=block.n_tokens, method=block.method_name)
    return block, use


def _head(tier: ActivationTier, loaded: LoadedModel, ids: list[int]) -> tuple[KVBlock, str, bool]:
    """The block of the prompts' head (instructions, uncompressed): stored, or built now."""
    return _prefix_block(tier, loaded, ids, None, {"memory_ids": [], "part": "head"}, [])


def memory_block(
    tier: ActivationTier, loaded: LoadedModel, item: MemoryItem, method: str
) -> tuple[str, bool]:
    """Build (unless stored) the composable block of one memory for `loaded`, as the kv
    route will read it: (its key, built now). The scheduler warms hot memories with it."""
    from engram.activation.compress import parse_method
    from engram.answer.prompt import memory_segment, prompt_head

    with loaded.lock:
        head, _, _ = _head(tier, loaded, prompt_head(loaded.tokenizer))
        _, key, built = tier.segment(
            loaded.model,
            head,
            memory_segment(loaded.tokenizer, item),
            (item.id, item.version),
            parse_method(method),
            {"model": loaded.name},
        )
    return key, built


def _composed(job: AnswerJob, loaded: LoadedModel, prompt: AnswerPrompt) -> tuple[KVBlock, KVUse]:
    """The context assembled from the head's block and one block per memory (each built on
    its first use and recorded as built from that memory), part recomputed."""
    from engram.activation.compose import compose
    from engram.activation.compress import parse_method

    tier = _tier(job)
    head, head_key, head_built = _head(tier, loaded, prompt.head_ids)
    built = int(head_built)
    compressor = parse_method(job.config.kv.method)
    segments = []
    for hit, ids in zip(prompt.ordered, prompt.segment_ids, strict=True):
        item = job.cube.get(hit.id)
        block, _, was_built = tier.segment(
            loaded.model, head, ids, (item.id, item.version), compressor, {"model": loaded.name}
        )
        segments.append(block)
        built += was_built
    block, recomputed = compose(loaded.model, head, segments, job.config.kv.recompute)
    use = KVUse(
        key=head_key,
        hit=built == 0,
        reused_tokens=block.n_tokens - recomputed,
        method="+".join(sorted({s.method_name for s in segments} - {""})),
        composed=len(segments),
        built=built,
        recomputed_tokens=recomputed,
    )
    return block, use


class KVRoute(AnswerRoute):
    name = "kv"

    def answer(self, job: AnswerJob) -> RouteAnswer:
        from engram.activation.reuse import generate
        from engram.answer.generation import timed

        loaded, load_ms, prompt = local_prompt(job)
        with loaded.lock:
            start = time.perf_counter()
            whole = not job.config.kv.compose or not prompt.segment_ids
            block, use = (_whole if whole else _composed)(job, loaded, prompt)
            kv_ms = (time.perf_counter() - start) * 1000
            out = timed(
                lambda options: generate(
                    loaded.model, block, prompt.ids, options.pop("max_new_tokens"), **options
                ),
                loaded.tokenizer,
                job.max_tokens,
            )
        return RouteAnswer.generated(
            out,
            text=clean(out.text, prompt.chat),
            model=loaded.name,
            ordered=prompt.ordered,
            prompt_tokens=len(prompt.ids),
            load_ms=load_ms,
            kv_ms=kv_ms,
            cached_tokens=use.reused_tokens,
            kv=use,
        )
