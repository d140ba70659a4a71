"""Load any causal LM checkpoint by spec (registered name, directory, cached hub id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from engram.models.cache import resolve


def load_causal_lm(
    spec: str | Path,
    home: Path | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, Any]:
    """(model, tokenizer) in eval mode on `device`; `home` defaults to the configured
    Engram home. Never touches the network."""
    from engram.lm.checkpoint import load_model

    if home is None:
        from engram.config import load_config

        home = load_config().home
    model, tokenizer = load_model(resolve(spec, home), dtype=dtype)
    model.to(device)  # type: ignore[arg-type]  # transformers' @wraps stub drops self
    return model, tokenizer
