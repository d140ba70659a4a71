"""GeRe: replay a small fixed set of general samples, and hold their hidden states inside
the bands they had before any fact was taught (threshold-based margin loss)."""

from __future__ import annotations

import torch

from engram.errors import ValidationError
from engram.parametric.batching import collate, encode, model_device
from engram.parametric.examples import text_examples
from engram.parametric.safeguards.base import BatchRun, Safeguard


class GeneralReplay(Safeguard):
    """`samples` general texts are replayed with every batch; with `margin_weight` > 0 each
    step also runs `chunk` of them and penalises hidden states that leave their initial band:
    above +t stays above +t, below -t stays below -t, in between stays in [-t, t], where t is
    `threshold` standard deviations of the layer's initial states."""

    name = "gere"

    def __init__(
        self,
        samples: int = 16,
        margin_weight: float = 1.0,
        threshold: float = 0.5,
        chunk: int = 4,
    ):
        if samples <= 0 or chunk <= 0 or threshold < 0 or margin_weight < 0:
            raise ValidationError("gere needs samples > 0, chunk > 0, threshold >= 0, weight >= 0")
        self.samples, self.margin_weight, self.threshold, self.chunk = (
            samples,
            margin_weight,
            threshold,
            chunk,
        )
        self._batches: list[dict[str, torch.Tensor]] = []
        self._reference: list[list[torch.Tensor]] = []
        self._bands: list[float] = []

    def before_batch(self, run: BatchRun) -> None:
        texts = run.learner.general_texts[: self.samples]
        if not texts:
            raise ValidationError("gere needs general texts (ContinualLearner general_texts)")
        run.replay.extend(text_examples(texts))
        if not self._batches and self.margin_weight > 0:
            self._record(run, texts)

    @torch.no_grad()
    def _record(self, run: BatchRun, texts: list[str]) -> None:
        """Reference states come from the model before its first batch: the base model."""
        model, tok = run.model, run.learner.tokenizer
        encoded = [encode(tok, e, run.learner.settings.max_length) for e in text_examples(texts)]
        was_training = model.training
        model.eval()
        for start in range(0, len(encoded), self.chunk):
            batch = collate(tok, encoded[start : start + self.chunk], model_device(model))
            self._batches.append(batch)
            self._reference.append([h.detach() for h in self._states(model, batch)])
        model.train(was_training)
        layers = len(self._reference[0])
        self._bands = [
            self.threshold * float(torch.cat([r[i].flatten() for r in self._reference]).std())
            for i in range(layers)
        ]

    @staticmethod
    def _states(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        )
        mask = batch["attention_mask"].bool()
        return [h[mask] for h in out.hidden_states[1:]]

    def penalty(self, run: BatchRun) -> torch.Tensor | None:
        if not self._batches or self.margin_weight == 0:
            return None
        i = run.step % len(self._batches)
        states = self._states(run.model, self._batches[i])
        terms = [
            margin_loss(h, h0, t)
            for h, h0, t in zip(states, self._reference[i], self._bands, strict=True)
        ]
        return self.margin_weight * torch.stack(terms).mean()


def margin_loss(h: torch.Tensor, h0: torch.Tensor, t: float) -> torch.Tensor:
    """Zero while every state stays in its initial band, linear outside it."""
    high, low = h0 > t, h0 < -t
    mid = ~(high | low)
    loss = torch.relu(t - h) * high + torch.relu(h + t) * low + torch.relu(h.abs() - t) * mid
    return loss.mean()
