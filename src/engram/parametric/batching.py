"""Examples → token tensors. Training and evaluation share this encoding, so the answer a
fact is scored on is tokenised exactly as it was taught."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engram.errors import ValidationError
from engram.parametric.examples import Example

IGNORE = -100


@dataclass
class Encoded:
    """Token ids of one example; `labels` is IGNORE on the prompt."""

    ids: list[int]
    labels: list[int]


def encode(tokenizer: Any, example: Example, max_length: int) -> Encoded:
    prompt = tokenizer(example.prompt, add_special_tokens=True)["input_ids"]
    completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    if not completion:
        raise ValidationError(f"example {example.prompt!r}: the completion has no tokens")
    ids = (list(prompt) + list(completion))[-max_length:]
    n_completion = min(len(completion), len(ids))
    labels = [IGNORE] * (len(ids) - n_completion) + ids[len(ids) - n_completion :]
    return Encoded(ids, labels)


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def collate(tokenizer: Any, encoded: Sequence[Encoded], device: torch.device) -> dict[str, Any]:
    """Right-padded batch: input_ids, attention_mask, labels."""
    width = max(len(e.ids) for e in encoded)
    pad = pad_id(tokenizer)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(encoded):
        n = len(e.ids)
        ids[row, :n] = torch.tensor(e.ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
