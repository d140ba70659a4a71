"""The continual learner: one cube's parametric memory, taught batch after batch."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model, get_peft_model_state_dict

from engram.config import LoRAConfig
from engram.errors import ValidationError
from engram.parametric.batching import collate, encode
from engram.parametric.examples import Fact, examples_for
from engram.parametric.safeguards.base import BatchRun, ComposedSafeguard, Safeguard

ADAPTER = "cube"


@dataclass(frozen=True)
class BatchReport:
    """What learning one batch cost (`replayed`: earlier examples mixed into each epoch)."""

    index: int
    facts: int
    examples: int
    replayed: int
    steps: int
    train_s: float
    final_loss: float


def lora_config(settings: LoRAConfig, rank: int | None = None) -> LoraConfig:
    """peft's LoraConfig from Engram's settings (`rank` overrides settings.rank)."""
    targets: str | list[str] = settings.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in settings.target_modules.split(",") if t.strip()]
    r = rank or settings.rank
    return LoraConfig(
        r=r,
        lora_alpha=settings.alpha * r / settings.rank,  # type: ignore[arg-type]  # peft: int, float ok
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


class ContinualLearner:
    """Teaches `model` one batch of facts at a time under `safeguards`.

    `model` is a transformers causal LM; the learner wraps it with peft in place (call
    `export()` for the adapter). `general_texts` are samples of ordinary text that
    safeguards may replay or hold the model to."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        settings: LoRAConfig | None = None,
        safeguards: Sequence[Safeguard] = (),
        general_texts: Sequence[str] = (),
    ):
        self.base = model
        self.model: torch.nn.Module = model
        self.tokenizer = tokenizer
        self.settings = settings or LoRAConfig()
        self.safeguard = ComposedSafeguard(safeguards)
        self.general_texts = list(general_texts)
        self.batches: list[list[Fact]] = []
        self.reports: list[BatchReport] = []
        for p in model.parameters():
            p.requires_grad_(False)

    @property
    def method(self) -> str:
        return "+".join(["lora", *self.safeguard.names])

    @property
    def memory_ids(self) -> list[str]:
        return [f.memory_id for batch in self.batches for f in batch]

    def learn(self, facts: Sequence[Fact]) -> BatchReport:
        """Train on one new batch of facts; returns timing and loss."""
        if not facts:
            raise ValidationError("a batch to learn needs at least one fact")
        index = len(self.batches)
        self.batches.append(list(facts))
        torch.manual_seed(self.settings.seed + index)
        run = BatchRun(
            index=index,
            facts=list(facts),
            examples=examples_for(facts),
            learner=self,
            rng=random.Random(self.settings.seed * 1000 + index),
        )
        started = time.perf_counter()
        if self.safeguard.owns_parameters:
            self.safeguard.prepare_parameters(run)
        else:
            self._ensure_adapter()
        self.safeguard.before_batch(run)
        loss = self._train(run)
        self.safeguard.after_batch(run)
        report = BatchReport(
            index,
            len(facts),
            len(run.examples),
            len(run.replay) + min(run.replay_per_epoch, len(run.replay_pool)),
            run.total_steps,
            time.perf_counter() - started,
            loss,
        )
        self.reports.append(report)
        return report

    def _ensure_adapter(self) -> None:
        if not isinstance(self.model, PeftModel):
            self.model = get_peft_model(self.base, lora_config(self.settings), ADAPTER)

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _train(self, run: BatchRun) -> float:
        s = self.settings
        params = self.trainable()
        if not params:
            raise ValidationError("no trainable parameters: the safeguard set up no adapter")
        optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=0.0)
        fixed = [encode(self.tokenizer, e, s.max_length) for e in run.examples + run.replay]
        pool = [encode(self.tokenizer, e, s.max_length) for e in run.replay_pool]
        drawn = min(run.replay_per_epoch, len(pool))
        per_epoch = math.ceil((len(fixed) + drawn) / s.batch_size)
        run.total_steps = s.epochs * per_epoch
        device = params[0].device
        self.model.train()
        loss_value = 0.0
        for _ in range(s.epochs):
            encoded = fixed + run.rng.sample(pool, drawn)
            order = list(range(len(encoded)))
            run.rng.shuffle(order)
            for start in range(0, len(order), s.batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = s.learning_rate * self.safeguard.lr_factor(run)
                chunk = [encoded[i] for i in order[start : start + s.batch_size]]
                loss = self.model(**collate(self.tokenizer, chunk, device)).loss
                extra = self.safeguard.penalty(run)
                total = loss if extra is None else loss + extra
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                self.safeguard.after_step(run)
                run.step += 1
                loss_value = float(loss.detach())
        self.model.eval()
        return loss_value

    def export(self) -> tuple[PeftConfig, dict[str, torch.Tensor]]:
        """One exact LoRA adapter holding everything learned: (peft config, state dict)."""
        exported = self.safeguard.export(self)
        if exported is not None:
            return exported
        if not isinstance(self.model, PeftModel):
            raise ValidationError("nothing learned yet: no adapter to export")
        state = get_peft_model_state_dict(self.model, adapter_name=ADAPTER)
        return self.model.peft_config[ADAPTER], {k: v.detach().clone() for k, v in state.items()}
