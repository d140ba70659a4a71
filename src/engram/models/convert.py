"""GGUF -> a plain transformers checkpoint, once: transformers dequantizes GGUF weights
on every load (30 s for 135M parameters on two cores) and cannot save a GGUF-loaded
model, so the float weights are moved into a model built from the same config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from engram.extras import require_extra
from engram.models.sources import ModelFetchError
from engram.quiet import silence_libraries


def load_gguf(gguf: Path, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, Any]:
    """(model, tokenizer) straight from a GGUF file (transformers dequantizes it)."""
    require_extra("activation", "reading GGUF weights")
    silence_libraries()
    _quiet_gguf_bar()
    folder, name = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelFetchError(f"cannot load {gguf.name} as a causal LM: {err}") from err
    model.eval()
    return model, tokenizer


def _quiet_gguf_bar() -> None:
    """transformers' GGUF reader draws its own tqdm bar (not its logging one): Engram
    prints its own progress lines instead."""
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    if not isinstance(gguf_utils.tqdm, partial):
        gguf_utils.tqdm = partial(gguf_utils.tqdm, disable=True)


def _plain_config(model: PreTrainedModel) -> Any:
    """The model's config without its GGUF quantization_config and GGUF path."""
    settings = model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        settings.pop(key, None)
    model_type = settings.pop("model_type")
    return AutoConfig.for_model(model_type, **settings)


def gguf_to_checkpoint(gguf: Path, out: Path) -> PreTrainedModel:
    """Write `out` (config.json, model.safetensors, generation config, tokenizer) from
    the GGUF file; returns the saved model (float32, eval mode)."""
    source, tokenizer = load_gguf(gguf)
    model = AutoModelForCausalLM.from_config(_plain_config(source), dtype=torch.float32)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ModelFetchError(
            f"{gguf.name}: weights do not fit the config (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    model.tie_weights()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model
