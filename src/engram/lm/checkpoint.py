"""Find and load a causal LM checkpoint: the packaged engram LM or any local one."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from engram.errors import ConfigError, ValidationError
from engram.quiet import silence_libraries

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def default_model_path() -> Path:
    """The checkpoint shipped inside the package (src/engram/data/engram-lm)."""
    return Path(str(resources.files("engram").joinpath("data", "engram-lm")))


def _check_checkpoint(path: Path) -> None:
    if not path.exists():
        raise ValidationError(f"model path {path} does not exist")
    if not path.is_dir():
        raise ValidationError(f"model path {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ValidationError(f"{path} is not a transformers checkpoint: it has no config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ValidationError(f"{path} has no weights ({', '.join(WEIGHT_FILES)})")


def load_model(
    path: str | Path | None = None, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, Any]:
    """(model, tokenizer) from a local checkpoint, in eval mode; None loads the packaged
    engram LM. Never touches the network."""
    if path is None:
        path = default_model_path()
        if not (path / "config.json").is_file():
            raise ConfigError(f"the packaged model is missing at {path}; run `engram lm build`")
    path = Path(path).expanduser()
    _check_checkpoint(path)
    silence_libraries()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ValidationError(f"cannot load a causal LM from {path}: {err}") from err
    model.eval()
    return model, tokenizer


def read_manifest(path: str | Path | None = None) -> dict[str, Any] | None:
    """The manifest.json written by `build_model`, or None for a foreign checkpoint."""
    folder = default_model_path() if path is None else Path(path).expanduser()
    _check_checkpoint(folder)
    file = folder / "manifest.json"
    if not file.is_file():
        return None
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValidationError(f"{file} is not valid JSON: {err}") from err
    return manifest
