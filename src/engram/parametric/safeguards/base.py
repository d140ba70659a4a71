"""The safeguard contract: hooks the continual learner calls around each new batch.

A safeguard overrides only the hooks it needs. `ComposedSafeguard` runs several in order;
at most one of them may own the trainable parameters (O-LoRA and OSF do; the default is
one LoRA adapter trained on every batch)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from engram.errors import ValidationError
from engram.parametric.examples import Example, Fact

if TYPE_CHECKING:
    from engram.parametric.learner import ContinualLearner


@dataclass
class BatchRun:
    """One batch being learned: what the trainer and every safeguard share. `replay` is
    mixed into every epoch; `replay_per_epoch` examples are drawn afresh from
    `replay_pool` for each epoch."""

    index: int
    facts: list[Fact]
    examples: list[Example]
    learner: ContinualLearner
    replay: list[Example] = field(default_factory=list)
    replay_pool: list[Example] = field(default_factory=list)
    replay_per_epoch: int = 0
    total_steps: int = 0
    step: int = 0
    rng: random.Random = field(default_factory=random.Random)

    @property
    def model(self) -> torch.nn.Module:
        return self.learner.model

    @property
    def seen(self) -> list[list[Fact]]:
        """Facts of the earlier batches, one list per batch."""
        return self.learner.batches[: self.index]


class Safeguard:
    """Base class: every hook is a no-op."""

    name: ClassVar[str] = ""
    owns_parameters: ClassVar[bool] = False

    def before_batch(self, run: BatchRun) -> None:
        """Set up for a new batch: add replay examples, record reference states."""

    def prepare_parameters(self, run: BatchRun) -> None:
        """Only for `owns_parameters`: make the parameters this batch trains."""

    def lr_factor(self, run: BatchRun) -> float:
        """Multiplier on the peak learning rate at `run.step` of `run.total_steps`."""
        return 1.0

    def penalty(self, run: BatchRun) -> torch.Tensor | None:
        """An extra loss term for this step (None: nothing to add)."""
        return None

    def after_step(self, run: BatchRun) -> None:
        """After each optimizer step."""

    def after_batch(self, run: BatchRun) -> None:
        """After the last step of a batch."""

    def export(self, learner: ContinualLearner) -> tuple[Any, dict[str, torch.Tensor]] | None:
        """Only for `owns_parameters`: (LoraConfig, peft state dict) of one exact adapter."""
        return None

    def hyperparameters(self) -> dict[str, Any]:
        """What goes into the adapter manifest."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and _is_plain(v)}


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None))


class ComposedSafeguard(Safeguard):
    """Several safeguards, each hook run in order; LR factors multiply, penalties add."""

    name = "composed"

    def __init__(self, safeguards: Sequence[Safeguard]):
        owners = [s.name for s in safeguards if s.owns_parameters]
        if len(owners) > 1:
            raise ValidationError(
                f"safeguards {owners} each choose the trained parameters; use at most one"
            )
        self.safeguards = list(safeguards)
        self.owns_parameters = bool(owners)  # type: ignore[misc]

    def before_batch(self, run: BatchRun) -> None:
        for s in self.safeguards:
            s.before_batch(run)

    def prepare_parameters(self, run: BatchRun) -> None:
        for s in self.safeguards:
            if s.owns_parameters:
                s.prepare_parameters(run)

    def lr_factor(self, run: BatchRun) -> float:
        factor = 1.0
        for s in self.safeguards:
            factor *= s.lr_factor(run)
        return factor

    def penalty(self, run: BatchRun) -> torch.Tensor | None:
        terms = [p for s in self.safeguards if (p := s.penalty(run)) is not None]
        return torch.stack(terms).sum() if terms else None

    def after_step(self, run: BatchRun) -> None:
        for s in self.safeguards:
            s.after_step(run)

    def after_batch(self, run: BatchRun) -> None:
        for s in self.safeguards:
            s.after_batch(run)

    def export(self, learner: ContinualLearner) -> tuple[Any, dict[str, torch.Tensor]] | None:
        for s in self.safeguards:
            if s.owns_parameters:
                return s.export(learner)
        return None

    def hyperparameters(self) -> dict[str, Any]:
        return {s.name: s.hyperparameters() for s in self.safeguards}

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.safeguards]
