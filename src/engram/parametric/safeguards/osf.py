"""OSF ("Sculpting Subspaces"): per batch, peft's OSF adapter freezes the top singular
directions of each weight and trains only the low-singular rest, then is merged in.

The preserved share grows by `step` with every batch (up to `max_preserve`), so directions
earlier batches shaped are frozen next time. The exported adapter is the total weight
change, factored exactly (SVD to its numerical rank) into one LoRA adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from peft import LoraConfig, OSFConfig, PeftModel, get_peft_model

from engram.errors import ValidationError
from engram.parametric.safeguards.base import BatchRun, Safeguard

if TYPE_CHECKING:
    from engram.parametric.learner import ContinualLearner


class OrthogonalSubspace(Safeguard):
    name = "osf"
    owns_parameters = True

    def __init__(
        self,
        preserve: float = 0.5,
        step: float = 0.1,
        max_preserve: float = 0.9,
        lr_scale: float = 1.0,
    ):
        if not 0 < preserve <= max_preserve < 1 or step < 0 or lr_scale <= 0:
            raise ValidationError(
                "osf needs 0 < preserve <= max_preserve < 1, step >= 0, lr_scale > 0"
            )
        self.preserve, self.step, self.max_preserve, self.lr_scale = (
            preserve,
            step,
            max_preserve,
            lr_scale,
        )
        self._original: dict[str, torch.Tensor] = {}

    def prepare_parameters(self, run: BatchRun) -> None:
        learner = run.learner
        settings = learner.settings
        targets: Any = settings.target_modules
        if targets != "all-linear":
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        share = min(self.max_preserve, self.preserve + self.step * run.index)
        config = OSFConfig(effective_rank=share, target_modules=targets, task_type="CAUSAL_LM")
        learner.model = get_peft_model(learner.base, config, "subspace")
        if not self._original:
            self._original = {
                _module_name(n): m.get_base_layer().weight.detach().clone()
                for n, m in learner.model.named_modules()
                if hasattr(m, "osf_svd_params")
            }

    def lr_factor(self, run: BatchRun) -> float:
        return self.lr_scale

    def after_batch(self, run: BatchRun) -> None:
        learner = run.learner
        if isinstance(learner.model, PeftModel):
            learner.model = learner.base = learner.model.merge_and_unload()
            for p in learner.base.parameters():
                p.requires_grad_(False)

    @torch.no_grad()
    def export(self, learner: ContinualLearner) -> tuple[Any, dict[str, torch.Tensor]]:
        if not self._original:
            raise ValidationError("nothing learned yet: no adapter to export")
        modules = dict(learner.base.named_modules())
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, w0 in self._original.items():
            delta = (modules[name].weight.detach() - w0).float()
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            keep = int((s > s.max() * 1e-6).sum()) if s.numel() and s.max() > 0 else 0
            root = s[:keep].sqrt()
            factors[name] = (vh[:keep] * root[:, None], u[:, :keep] * root[None, :])
        rank = max(1, max(a.shape[0] for a, _ in factors.values()))
        state: dict[str, torch.Tensor] = {}
        for name, (a, b) in factors.items():
            pad_a = torch.zeros(rank, a.shape[1])
            pad_b = torch.zeros(b.shape[0], rank)
            pad_a[: a.shape[0]], pad_b[:, : b.shape[1]] = a, b
            state[f"base_model.model.{name}.lora_A.weight"] = pad_a
            state[f"base_model.model.{name}.lora_B.weight"] = pad_b
        config = LoraConfig(
            r=rank, lora_alpha=rank, target_modules=sorted(self._original), task_type="CAUSAL_LM"
        )
        return config, state


def _module_name(peft_name: str) -> str:
    """'base_model.model.model.layers.0.q_proj' -> 'model.layers.0.q_proj'."""
    return peft_name.removeprefix("base_model.model.")
