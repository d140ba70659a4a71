"""One base model serving many cubes' adapters: load, hot-swap, unload, merge."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model_state_dict

from engram.errors import ConfigError, NotFoundError, ValidationError
from engram.parametric.batching import model_device
from engram.parametric.registry import (
    AdapterManifest,
    AdapterRegistry,
    model_fingerprint,
    trained_on,
)

if TYPE_CHECKING:
    from transformers import GenerationMixin

Combination = Literal["cat", "svd", "linear", "ties"]
EXACT: frozenset[str] = frozenset({"cat", "svd"})


class AdapterHost:
    """Holds a base model and any number of named adapters on it; one is active (or none)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any):
        self.base = model
        self.model: torch.nn.Module = model
        self.tokenizer = tokenizer
        self.fingerprint = model_fingerprint(model)
        self.active: str | None = None

    @property
    def loaded(self) -> list[str]:
        return sorted(self.model.peft_config) if isinstance(self.model, PeftModel) else []

    def load(self, manifest: AdapterManifest, name: str | None = None) -> str:
        """Load a registered adapter under `name` (default: its owner) and activate it."""
        if not trained_on(manifest, self.base, self.fingerprint):
            raise ConfigError(
                f"adapter {manifest.owner} v{manifest.version} was trained on base model "
                f"{manifest.base_model} ({manifest.base_fingerprint}), not on this one "
                f"({self.fingerprint})"
            )
        AdapterRegistry.verify(manifest)
        name = name or manifest.owner
        if name in self.loaded:
            self.unload(name)
        path = str(manifest.path)
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(path, adapter_name=name, is_trainable=False)
        else:
            self.model = PeftModel.from_pretrained(self.base, path, adapter_name=name)
        self.activate(name)
        return name

    def activate(self, name: str | None) -> None:
        """Switch the active adapter (hot swap); None answers with the bare base model."""
        if name is not None:
            if name not in self.loaded:
                raise NotFoundError(f"adapter {name!r} is not loaded")
            assert isinstance(self.model, PeftModel)
            self.model.set_adapter(name)
        self.active = name

    def unload(self, name: str) -> None:
        if name not in self.loaded:
            raise NotFoundError(f"adapter {name!r} is not loaded")
        assert isinstance(self.model, PeftModel)
        if len(self.loaded) == 1:
            self.model = self.model.unload()
            self.base = self.model
        else:
            if self.model.active_adapter == name:
                self.model.set_adapter(next(n for n in self.loaded if n != name))
            self.model.delete_adapter(name)
        if self.active == name:
            self.active = None

    @contextmanager
    def using(self, name: str | None) -> Iterator[torch.nn.Module]:
        """The model with adapter `name` active (None: adapters disabled)."""
        previous = self.active
        if name is None and isinstance(self.model, PeftModel):
            with self.model.disable_adapter():
                yield self.model
            return
        self.activate(name)
        try:
            yield self.model
        finally:
            if previous is not None:
                self.activate(previous)

    @torch.no_grad()
    def answer(self, prompt: str, adapter: str | None, max_new_tokens: int = 16) -> str:
        """Greedy continuation of `prompt` with or without an adapter."""
        with self.using(adapter) if adapter or self.loaded else nullcontext(self.model) as model:
            inputs = self.tokenizer(prompt, return_tensors="pt").to(model_device(model))
            out = cast("GenerationMixin", model).generate(  # a causal LM (or peft's wrapper)
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(
            out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )

    def merge(
        self,
        names: Sequence[str],
        combination: Combination = "cat",
        weights: Sequence[float] | None = None,
        into: str = "merged",
    ) -> tuple[PeftConfig, dict[str, torch.Tensor]]:
        """One adapter combining loaded ones. `cat` (rank = sum of ranks) and `svd` (at that
        same rank) reproduce the weighted sum of the adapters' updates exactly; `linear` and
        `ties` average A and B separately, which is not the sum of the updates."""
        if len(names) < 2:
            raise ValidationError("merging needs at least two adapters")
        missing = [n for n in names if n not in self.loaded]
        if missing:
            raise NotFoundError(f"adapters {missing} are not loaded")
        assert isinstance(self.model, PeftModel)
        weights = list(weights or [1.0] * len(names))
        if len(weights) != len(names):
            raise ValidationError(f"{len(weights)} weights for {len(names)} adapters")
        extra: dict[str, Any] = {}
        if combination == "svd":
            # svd merging is LoRA's: every loaded adapter has a LoraConfig
            extra["svd_rank"] = sum(cast(LoraConfig, self.model.peft_config[n]).r for n in names)
        elif combination == "ties":
            extra["density"] = 1.0
        self.model.add_weighted_adapter(list(names), weights, into, combination, **extra)
        state = get_peft_model_state_dict(self.model, adapter_name=into)
        config = self.model.peft_config[into]
        exported = {k: v.detach().clone() for k, v in state.items()}
        self.model.delete_adapter(into)
        if self.active:
            self.model.set_adapter(self.active)
        return config, exported
