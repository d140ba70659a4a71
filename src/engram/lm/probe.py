"""Copy probe: facts placed in the context, questions after them, greedy exact match."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from engram.lm.corpus import key_value_items, kv_question, kv_statement


@dataclass(frozen=True)
class ProbeItem:
    """A context of key/value facts, one question about one of them, and its answer."""

    context: str
    question: str
    answer: str

    @property
    def prompt(self) -> str:
        return f"{self.context}\n{self.question}"


def probe_items(n: int, *, facts: int = 8, seed: int = 12345) -> list[ProbeItem]:
    """`n` probe items of `facts` facts each, from a seed the training corpus never uses,
    so the answers can only come from the context."""
    rng = random.Random(f"copy-probe:{seed}")
    items = []
    for _ in range(n):
        triples = key_value_items(rng, facts)
        attribute, key, value = rng.choice(triples)
        context = "\n".join(kv_statement(*t) for t in triples)
        items.append(ProbeItem(context, kv_question(attribute, key), value))
    return items


def first_answer(text: str) -> str:
    """The answer part of a continuation: up to the first newline or sentence end."""
    return text.split("\n")[0].strip().split(". ")[0].rstrip(".").strip()


@torch.no_grad()
def greedy_answers(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int = 8
) -> list[str]:
    """Greedy continuations of `prompts` (left-padded into one batch), cut by
    `first_answer`. Works for any causal LM tokenizer, with or without a pad token."""
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(map(len, encoded))
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, seq in enumerate(encoded):
        ids[row, width - len(seq) :] = torch.tensor(seq)
        mask[row, width - len(seq) :] = 1
    out = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=pad,
    )
    texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [first_answer(t) for t in texts]


def copy_probe(
    model: Any,
    tokenizer: Any,
    n: int = 100,
    *,
    facts: int = 8,
    seed: int = 12345,
    batch_size: int = 25,
) -> float:
    """Fraction of `n` questions answered exactly (greedy) from facts in the context.
    Guessing without copying scores about 0: the values are random codes and words."""
    items = probe_items(n, facts=facts, seed=seed)
    was_training = model.training
    model.eval()
    hits = 0
    for start in range(0, n, batch_size):
        batch = items[start : start + batch_size]
        got = greedy_answers(model, tokenizer, [item.prompt for item in batch])
        hits += sum(g == item.answer for g, item in zip(got, batch, strict=True))
    model.train(was_training)
    return hits / n
