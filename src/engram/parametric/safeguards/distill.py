"""General-text distillation (Learning without Forgetting, Li & Hoiem 2016): every step, a
few general texts drawn from a large pool are scored twice, by the model being taught and
by the same model with its adapters switched off, and the KL between the two next-token
distributions is added to the loss. Facts move the model where facts are asked; on
ordinary text it keeps predicting as its base did."""

from __future__ import annotations

import torch
from peft import PeftModel

from engram.errors import ValidationError
from engram.parametric.batching import Encoded, collate, encode, model_device
from engram.parametric.examples import text_examples
from engram.parametric.safeguards.base import BatchRun, Safeguard


class GeneralDistillation(Safeguard):
    """Adds `weight` × KL(teacher ‖ model), averaged over the real tokens of `chunk` texts
    drawn per step from up to `samples` of the learner's general texts. The teacher is the
    model with its adapters disabled: the base model for LoRA and O-LoRA; for OSF, which
    folds each batch into the weights, the model as it was before the batch."""

    name = "distill"

    def __init__(self, weight: float = 1.0, samples: int = 1024, chunk: int = 8):
        if weight <= 0 or samples <= 0 or chunk <= 0:
            raise ValidationError("distill needs weight > 0, samples > 0 and chunk > 0")
        self.weight, self.samples, self.chunk = weight, samples, chunk
        self._pool: list[Encoded] = []

    def before_batch(self, run: BatchRun) -> None:
        if self._pool:
            return
        texts = run.learner.general_texts[: self.samples]
        if not texts:
            raise ValidationError("distill needs general texts (ContinualLearner general_texts)")
        tok, max_length = run.learner.tokenizer, run.learner.settings.max_length
        self._pool = [encode(tok, e, max_length) for e in text_examples(texts)]

    def penalty(self, run: BatchRun) -> torch.Tensor | None:
        model = run.model
        if not isinstance(model, PeftModel):
            raise ValidationError("distill needs an adapter to switch off (a peft model)")
        picked = run.rng.sample(self._pool, min(self.chunk, len(self._pool)))
        batch = collate(run.learner.tokenizer, picked, model_device(model))
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.no_grad(), model.disable_adapter():
            teacher = torch.log_softmax(model(**inputs).logits.float(), dim=-1)
        student = torch.log_softmax(model(**inputs).logits.float(), dim=-1)
        mask = batch["attention_mask"].bool()
        kl = (teacher.exp() * (teacher - student)).sum(-1)[mask].mean()
        return self.weight * kl
