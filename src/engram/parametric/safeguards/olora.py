"""O-LoRA: a new LoRA adapter per batch, all earlier ones frozen and still active, and a
penalty on the overlap of the new adapter's subspace with theirs: sum |A_old A_new^T|."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict

from engram.errors import ValidationError
from engram.parametric.safeguards.base import BatchRun, Safeguard

if TYPE_CHECKING:
    from peft.tuners.tuners_utils import BaseTuner

    from engram.parametric.learner import ContinualLearner

MERGED = "merged"


class OrthogonalLoRA(Safeguard):
    name = "olora"
    owns_parameters = True

    def __init__(self, weight: float = 0.5, rank: int | None = None):
        if weight < 0:
            raise ValidationError(f"olora weight must be >= 0, got {weight}")
        self.weight, self.rank = weight, rank
        self._names: list[str] = []
        self._pairs: list[tuple[torch.nn.Linear, torch.nn.Module, list[torch.Tensor]]] = []

    def prepare_parameters(self, run: BatchRun) -> None:
        from engram.parametric.learner import lora_config

        learner, new = run.learner, f"b{run.index}"
        config = lora_config(learner.settings, self.rank)
        if isinstance(learner.model, PeftModel):
            learner.model.add_adapter(new, config)
        else:
            learner.model = get_peft_model(learner.base, config, new)
        self._names.append(new)
        _tuner(learner.model).set_adapter(list(self._names))
        for name, p in learner.model.named_parameters():
            p.requires_grad_(f".{new}." in name)
        self._pairs = [
            (lora_a[new], m, [lora_a[o].weight.detach() for o in self._names[:-1]])
            for m in learner.model.modules()
            if new in (lora_a := _lora_a(m))
        ]

    def penalty(self, run: BatchRun) -> torch.Tensor | None:
        if self.weight == 0 or run.index == 0:
            return None
        terms = [(old @ new.weight.T).abs().sum() for new, _, olds in self._pairs for old in olds]
        return self.weight * torch.stack(terms).sum() if terms else None

    def export(self, learner: ContinualLearner) -> tuple[Any, dict[str, torch.Tensor]]:
        """The per-batch adapters concatenated (peft `cat`): exactly their sum."""
        model = learner.model
        if not isinstance(model, PeftModel):
            raise ValidationError("nothing learned yet: no adapter to export")
        if len(self._names) == 1:
            state = get_peft_model_state_dict(model, adapter_name=self._names[0])
            return model.peft_config[self._names[0]], {k: v.clone() for k, v in state.items()}
        model.add_weighted_adapter(self._names, [1.0] * len(self._names), MERGED, "cat")
        state = get_peft_model_state_dict(model, adapter_name=MERGED)
        config = model.peft_config[MERGED]
        exported = {k: v.detach().clone() for k, v in state.items()}
        model.delete_adapter(MERGED)
        _tuner(model).set_adapter(list(self._names))
        for p in model.parameters():
            p.requires_grad_(False)
        return config, exported


def _tuner(model: PeftModel) -> BaseTuner:
    """The peft tuner under `model` (torch types module attributes as Tensor | Module)."""
    return cast("BaseTuner", model.base_model)


def _lora_a(module: torch.nn.Module) -> Mapping[str, torch.nn.Linear]:
    """The module's LoRA A layers by adapter name ({} for a module without LoRA); O-LoRA's
    overlap penalty is defined for the 2-D weights of LoRA on linear layers."""
    return cast("Mapping[str, torch.nn.Linear]", getattr(module, "lora_A", {}))
