"""`engram models tune-embedder`: adapt the packaged encoder to conversational memory.

Contrastive training (in-batch negatives plus one hard negative from the same
conversation, as in multiple-negatives ranking) of LoRA factors on every linear layer of
all-MiniLM-L6-v2, from (question, evidence turn) pairs of the project's generated
conversations (`engram bench devset`; never LoCoMo text). The result is an adapter file
(engram.embed.adapter) that `embedder.adapter` selects; the packaged `conv-v1` is this
command with its defaults and `conv-v2` (the default) with `--seeds 1,2,3,4,5,6` (seed 0
is the generated set the benchmarks score).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engram.errors import MissingExtraError, ValidationError

TARGETS = ["query", "key", "value", "dense"]  # every linear layer of a BERT encoder
SCALE = 20.0  # cosine similarities to logits (sentence-transformers' MNRL default)


@dataclass(frozen=True)
class TuneSettings:
    seeds: tuple[int, ...] = (1, 2, 3)
    conversations: int = 10  # per seed
    epochs: int = 1
    rank: int = 16
    lr: float = 2e-4
    batch: int = 32
    max_length: int = 128
    max_steps: int | None = None  # a cap, for smoke runs
    shuffle_seed: int = 0

    def check(self) -> None:
        if not self.seeds:
            raise ValidationError("tune-embedder needs at least one generator seed")
        for name in ("conversations", "epochs", "rank", "batch", "max_length"):
            if getattr(self, name) < 1:
                raise ValidationError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.lr < 1:
            raise ValidationError(f"lr must be between 0 and 1, got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValidationError(f"max_steps must be at least 1, got {self.max_steps}")


def triplets(settings: TuneSettings, rng: random.Random) -> list[tuple[str, str, str]]:
    """(question, an evidence turn, another turn of the same conversation), each turn as
    ingest embeds it (`index_text`: "Speaker: text")."""
    from engram.bench.devset import generate
    from engram.text.ingest import index_text

    out: list[tuple[str, str, str]] = []
    for seed in settings.seeds:
        for sample in generate(seed, settings.conversations):
            conv = sample["conversation"]
            text = {
                turn["dia_id"]: index_text(turn["text"], turn["speaker"])
                for key, turns in conv.items()
                if key.startswith("session_") and isinstance(turns, list)
                for turn in turns
            }
            ids = list(text)
            for qa in sample["qa"]:
                evidence = [e for e in qa["evidence"] if e in text]
                others = [i for i in ids if i not in qa["evidence"]]
                for turn in evidence[:2]:
                    out.append((qa["question"], text[turn], text[rng.choice(others)]))
    return out


def tune(
    settings: TuneSettings, out: Path, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Train the factors and write the adapter file; returns what was done."""
    settings.check()
    try:
        import torch
        from peft import LoraConfig, get_peft_model
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise MissingExtraError(
            "tune-embedder needs torch, sentence-transformers and peft: "
            "pip install 'engram-os[parametric]'"
        ) from err
    from engram.embed.adapter import save_adapter
    from engram.embed.local import DEFAULT_MODEL_NAME, packaged_model_path

    rng = random.Random(settings.shuffle_seed)  # negatives, then each epoch's order
    data = triplets(settings, rng)
    if len(data) < settings.batch:
        raise ValidationError(f"{len(data)} training pairs is fewer than one batch")
    torch.manual_seed(settings.shuffle_seed)
    encoder = SentenceTransformer(str(packaged_model_path()), device="cpu")
    tokenizer = encoder.tokenizer
    lora = LoraConfig(
        r=settings.rank, lora_alpha=2 * settings.rank, lora_dropout=0.05, target_modules=TARGETS
    )
    base: Any = encoder[0].auto_model
    model = get_peft_model(base, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    per_epoch = len(data) // settings.batch
    steps = settings.epochs * per_epoch
    if settings.max_steps is not None:
        steps = min(steps, settings.max_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / 20) * max(0.0, 1 - i / steps)
    )

    def embed(texts: list[str]) -> Any:
        features = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=settings.max_length,
            return_tensors="pt",
        )
        hidden = model(**features).last_hidden_state
        mask = features["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    model.train()
    start, step, losses = time.perf_counter(), 0, []
    while step < steps:
        rng.shuffle(data)
        for first in range(0, per_epoch * settings.batch, settings.batch):
            if step >= steps:
                break
            batch = data[first : first + settings.batch]
            queries = embed([q for q, _, _ in batch])
            turns = embed([p for _, p, _ in batch] + [n for _, _, n in batch])
            logits = queries @ turns.T * SCALE
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
            if step % 25 == 0 or step == steps:
                took = time.perf_counter() - start
                log(f"step {step}/{steps}  loss {losses[-1]:.3f}  {took:.0f}s")
    factors = {}
    scaling = lora.lora_alpha / lora.r
    for name, module in model.named_modules():
        if "default" in getattr(module, "lora_A", {}):
            a = module.lora_A["default"].weight.detach().numpy()
            b = module.lora_B["default"].weight.detach().numpy() * scaling
            if not b.any():  # never trained: the pooler, which mean pooling does not use
                continue
            weight = name.removeprefix("base_model.model.") + ".weight"
            factors[weight] = (a, b)
    info = {
        "settings": asdict(settings),
        "pairs": len(data),
        "steps": step,
        "first_loss": round(losses[0], 4),
        "last_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }
    save_adapter(out, out.stem, DEFAULT_MODEL_NAME, factors, info)
    return {"adapter": str(out), "weights": len(factors), **info}
