"""The identity of a model's weights, shared by the activation and parametric tiers: a KV
block and an adapter built on the same model carry the same fingerprint."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

# Config keys that do not change what a model computes.
_IGNORED_CONFIG = {"_name_or_path", "transformers_version", "_attn_implementation_autoset"}
_SAMPLES_PER_TENSOR = 4096
# Weights an adapter adds (peft injects them into the base model's modules).
_ADAPTER_WEIGHTS = ("lora_", "osf_")


def base_model(model: Any) -> Any:
    """The model under a peft wrapper (the model itself when unwrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_fingerprint(model: Any) -> str:
    """sha256 over the config (minus paths and versions), every base parameter's name,
    shape and dtype, and a strided sample of its values: cheap even for a large checkpoint,
    and any retraining or different weights change it. Adapter weights are left out, so a
    model carrying LoRA layers has its base model's fingerprint."""
    base = base_model(model)
    digest = hashlib.sha256()
    config = getattr(base, "config", None)
    settings = {} if config is None else config.to_dict()
    settings = {k: v for k, v in settings.items() if k not in _IGNORED_CONFIG}
    settings = {k: v for k, v in settings.items() if not k.startswith("_attn_implementation")}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    weights = {
        name.replace(".base_layer", ""): tensor
        for name, tensor in base.state_dict().items()
        if not any(marker in name for marker in _ADAPTER_WEIGHTS)
    }
    with torch.no_grad():
        for name, tensor in sorted(weights.items()):
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
            digest.update(flat[::step][:_SAMPLES_PER_TENSOR].float().cpu().numpy().tobytes())
    return digest.hexdigest()
