"""The lora route: the owner's latest adapter answers from what it learned, with no
retrieval. The prompt is the question in the "Q: ... A:" form adapters are taught, and the
model is the adapter's base model (an adapter fits only the weights it was trained on)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from engram.answer.result import AdapterUse
from engram.answer.routes.base import AnswerJob, AnswerRoute, RouteAnswer
from engram.errors import NotFoundError

if TYPE_CHECKING:
    from engram.parametric.registry import AdapterManifest


def _train_hint(owner: str) -> str:
    kind, _, name = owner.partition(":")
    flag = "-u" if kind == "user" else "-a"
    return f"`engram lora train {flag} {name}` (Python: Memory.lora.train)"


def latest_adapter(job: AnswerJob) -> AdapterManifest:
    """The owner's newest adapter version; NotFoundError saying how to train one."""
    from engram.parametric.cube import registry_for

    registry = registry_for(job.config)
    if not registry.versions(job.owner):
        raise NotFoundError(
            f"{job.owner} has no LoRA adapter to answer with: train one with "
            f"{_train_hint(job.owner)}, or answer with route 'text'"
        )
    return registry.get(job.owner)


class LoRARoute(AnswerRoute):
    name = "lora"
    retrieves = False

    def answer(self, job: AnswerJob) -> RouteAnswer:
        from engram.extras import require_extra

        require_extra("parametric", "route 'lora'")
        from engram.answer.generation import generate
        from engram.parametric.examples import qa_prompt

        manifest = latest_adapter(job)
        spec = job.model if job.model is not None else manifest.base_model
        hosted, load_ms = job.shelf.adapters(spec)
        host = hosted.host
        # peft names modules after adapters: no dots, so a digest of the owner names it
        name = f"a{hashlib.sha256(job.owner.encode()).hexdigest()[:16]}v{manifest.version}"
        ids = host.tokenizer(qa_prompt(job.question))["input_ids"]
        with hosted.lock:
            if name not in host.loaded:
                host.load(manifest, name)
            with host.using(name) as model:
                out = generate(model, host.tokenizer, ids, job.max_tokens)
        text = out.text.split("\n", 1)[0].split(" Q:", 1)[0].strip()
        matched = job.matched.memory_id if job.matched is not None else None
        return RouteAnswer.generated(
            out,
            text=text,
            model=manifest.base_model,
            ordered=[],
            prompt_tokens=len(ids),
            load_ms=load_ms,
            adapter=AdapterUse(
                version=manifest.version, base_model=manifest.base_model, matched_memory_id=matched
            ),
        )
