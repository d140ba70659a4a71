"""The text route: the retrieved memories go into the prompt as text, and the local model
(or the `llm` section's model, e.g. an OpenAI-compatible endpoint) answers."""

from __future__ import annotations

import time

from engram.answer.prompt import both_ends, messages
from engram.answer.routes.base import AnswerJob, AnswerRoute, RouteAnswer, clean, local_prompt
from engram.errors import ConfigError


class TextRoute(AnswerRoute):
    name = "text"

    def answer(self, job: AnswerJob) -> RouteAnswer:
        if job.config.answer.provider == "llm" and job.model is None:
            return self._by_llm(job)
        from engram.answer.generation import generate

        loaded, load_ms, prompt = local_prompt(job)
        with loaded.lock:
            out = generate(loaded.model, loaded.tokenizer, prompt.ids, job.max_tokens)
        return RouteAnswer.generated(
            out,
            text=clean(out.text, prompt.chat),
            model=loaded.name,
            ordered=prompt.ordered,
            prompt_tokens=len(prompt.ids),
            load_ms=load_ms,
        )

    def _by_llm(self, job: AnswerJob) -> RouteAnswer:
        """The chat messages sent to the configured `llm` (no token counts, no TTFT)."""
        from engram.llm import build_llm

        settings = job.config.llm.model_copy(
            update={"max_tokens": job.max_tokens, "json_mode": False}
        )
        llm = build_llm(settings)
        if llm is None:
            raise ConfigError("answer.provider 'llm' needs an llm.provider other than 'none'")
        ordered = both_ends(job.hits)
        try:
            started = time.perf_counter()
            text = llm.complete(messages(job.question, ordered))
            finished = time.perf_counter()
        finally:
            llm.close()
        return RouteAnswer(
            text=text.strip(),
            model=llm.name,
            ordered=ordered,
            prompt_tokens=None,
            completion_tokens=None,
            first_token=None,
            finished=finished,
            prefill_ms=None,
            generate_ms=(finished - started) * 1000,
        )
