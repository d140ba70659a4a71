"""A cube's parametric memory: teach its memories to a LoRA adapter, continually, and keep
every version in the registry (`$ENGRAM_HOME/lora/<owner>/v<N>/`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from engram.config import EngramConfig, LoRAConfig
from engram.errors import ConfigError, MissingExtraError, ValidationError
from engram.parametric.examples import Fact
from engram.parametric.learner import ADAPTER, ContinualLearner
from engram.parametric.registry import (
    AdapterManifest,
    AdapterRegistry,
    model_fingerprint,
    trained_on,
)
from engram.parametric.safeguards import build_safeguards


def registry_for(config: EngramConfig) -> AdapterRegistry:
    return AdapterRegistry(config.artifacts / "lora")


def load_base(
    spec: str | Path | None, config: EngramConfig | None = None
) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) of a model spec: a registered name (pulled into the home of
    `config` on first use when allowed), a checkpoint directory, or 'engram-lm' / None
    (the packaged Engram LM)."""
    try:
        from engram.lm import load_model
    except ImportError as err:  # pragma: no cover - the lm package ships with engram
        raise MissingExtraError("the Engram LM package is missing") from err
    if isinstance(spec, str) and config is not None:
        from engram.models.local import configured_checkpoint

        return load_model(configured_checkpoint(spec, config))
    return load_model(None if spec == "engram-lm" else spec)


def base_name(path: str | Path | None) -> str:
    return str(path) if path is not None else "engram-lm"


def resume(learner: ContinualLearner, manifest: AdapterManifest, earlier: Sequence[Fact]) -> None:
    """Continue from a saved adapter: its weights become the (default LoRA) adapter being
    trained, and the facts it was taught become the learner's first, already-seen batch."""
    if learner.safeguard.owns_parameters:
        raise ValidationError(
            f"continuing a saved adapter is supported for LoRA-based safeguards, not "
            f"{learner.safeguard.names}; train from scratch with --fresh"
        )
    from peft import LoraConfig

    path = AdapterRegistry.verify(manifest)
    assert manifest.path is not None
    config = LoraConfig.from_pretrained(str(manifest.path))
    learner.model = get_peft_model(learner.base, config, ADAPTER)
    set_peft_model_state_dict(learner.model, load_file(str(path)), adapter_name=ADAPTER)
    for name, p in learner.model.named_parameters():
        p.requires_grad_(f".{ADAPTER}." in name)
    learner.batches.append(list(earlier))


def teach(
    config: EngramConfig,
    owner: str,
    facts: Sequence[Fact],
    *,
    model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    settings: LoRAConfig | None = None,
    general_texts: Sequence[str] = (),
    fresh: bool = False,
    options: dict[str, dict[str, Any]] | None = None,
) -> AdapterManifest:
    """Teach `owner`'s adapter the facts it does not know yet and save a new version.

    Without `fresh`, the latest version is continued: facts it was trained on are earlier
    memories (for replay), the others form the new batch."""
    from engram.parametric.general_text import general_pool

    settings = settings or config.lora
    if model is None:
        model, tokenizer = load_base(settings.base_model, config)
    registry = registry_for(config)
    fingerprint = model_fingerprint(model)
    previous = None if fresh or not registry.versions(owner) else registry.get(owner)
    if previous is not None and not trained_on(previous, model, fingerprint):
        raise ConfigError(
            f"{owner}'s adapter v{previous.version} was trained on another base model; "
            "use --fresh to start over on this one"
        )
    known = set(previous.memory_ids) if previous else set()
    new = [f for f in facts if f.memory_id not in known]
    if not new:
        raise ValidationError(f"{owner} has no memories the adapter has not learned yet")
    learner = ContinualLearner(
        model,
        tokenizer,
        settings,
        build_safeguards(settings.safeguards, options),
        general_texts or general_pool(),
    )
    if previous is not None:
        resume(learner, previous, [f for f in facts if f.memory_id in known])
    report = learner.learn(new)
    peft_config, state = learner.export()
    manifest = AdapterManifest(
        owner=owner,
        version=0,
        method=learner.method,
        base_model=base_name(settings.base_model),
        base_fingerprint=fingerprint,
        memory_ids=learner.memory_ids,
        hyperparameters=settings.model_dump(),
        safeguards=learner.safeguard.hyperparameters(),
        metrics={"train_s": report.train_s, "steps": report.steps, "loss": report.final_loss},
        parents=[previous.version] if previous else [],
    )
    return registry.save(manifest, peft_config, state)
