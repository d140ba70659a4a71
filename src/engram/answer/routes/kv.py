"""The kv route: the same prompt as the text route, but the context (instructions and
memories) is read from a KV block of the owner's activation tier. A block is found by its
tokens (content-addressed, so any change of a memory or of the order is a new block);
on a miss it is built, compressed with `kv.method`, stored and recorded as built from
those memories (so erasing one of them deletes it), then used."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from engram.answer.result import KVUse
from engram.answer.routes.base import AnswerJob, AnswerRoute, RouteAnswer, clean, local_prompt
from engram.tiers import ACTIVATION

if TYPE_CHECKING:
    from engram.activation.block import KVBlock
    from engram.activation.tier import ActivationTier
    from engram.answer.models import LoadedModel
    from engram.answer.prompt import AnswerPrompt


def _block(job: AnswerJob, loaded: LoadedModel, prompt: AnswerPrompt) -> tuple[KVBlock, str, bool]:
    """(block of the prompt's context, its key, hit): stored, or built and stored now."""
    from engram.activation.build import build_kv
    from engram.activation.compress import parse_method

    tier: ActivationTier = job.cube.tiers[ACTIVATION]  # type: ignore[assignment]
    store = tier.kv.store()
    compressor = parse_method(job.config.kv.method)
    method = compressor.spec() if compressor is not None else []
    found = store.longest_prefix(prompt.ids, loaded.fingerprint, method, loaded.tokenizer_hash)
    if found is not None and found.n_tokens == len(prompt.context_ids):
        return found, store.key_of(found), True
    ids = [hit.id for hit in prompt.ordered]
    versions = [(item.id, item.version) for item in (job.cube.get(i) for i in ids)]
    meta: dict[str, Any] = {"owner": job.owner, "memory_ids": ids, "model": loaded.name}
    block = build_kv(
        loaded.model, prompt.context_ids, loaded.tokenizer, compressor, meta, loaded.fingerprint
    )
    return block, tier.keep(block, versions), False


class KVRoute(AnswerRoute):
    name = "kv"

    def answer(self, job: AnswerJob) -> RouteAnswer:
        from engram.activation.reuse import generate
        from engram.answer.generation import timed

        loaded, load_ms, prompt = local_prompt(job)
        with loaded.lock:
            start = time.perf_counter()
            block, key, hit = _block(job, loaded, prompt)
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
            cached_tokens=block.n_tokens,
            kv=KVUse(key=key, hit=hit, reused_tokens=block.n_tokens, method=block.method_name),
        )
