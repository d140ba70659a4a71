"""How well a model knows its facts: recall, recognition, perplexity drift, and the
continual-learning accuracy matrix (average accuracy, BWT, forgetting, forward transfer)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from engram.parametric.batching import IGNORE, collate, encode, model_device
from engram.parametric.examples import Example, Fact, qa_prompt, text_examples


@dataclass(frozen=True)
class FactScore:
    """`exact`: greedy decoding from the prompt reproduces the answer's tokens.
    `logprob`: log-likelihood of the answer given the prompt; `tokens`: its length."""

    memory_id: str
    exact: bool
    logprob: float
    tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(self.tokens, 1)


def probe(fact: Fact, form: str = "statement") -> Example:
    """The recall probe of a fact: its prompt, or its question, then the bare answer."""
    if form == "question" and fact.question:
        return Example(qa_prompt(fact.question), f" {fact.answer}", fact.memory_id)
    return Example(fact.prompt, f" {fact.answer}", fact.memory_id)


@torch.no_grad()
def score_examples(
    model: torch.nn.Module,
    tokenizer: object,
    examples: Sequence[Example],
    batch_size: int = 32,
    max_length: int = 128,
) -> list[FactScore]:
    """Teacher-forced scoring: greedy decoding emits the completion exactly when the argmax
    at every completion position is the gold token, so one forward pass gives both."""
    model.eval()
    device = model_device(model)
    scores: list[FactScore] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = collate(tokenizer, [encode(tokenizer, e, max_length) for e in chunk], device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        gold = batch["labels"][:, 1:]
        scored = gold != IGNORE
        safe = gold.clamp(min=0)
        token_lp = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        hit = logp.argmax(-1) == safe
        for row, example in enumerate(chunk):
            m = scored[row]
            scores.append(
                FactScore(
                    example.memory_id,
                    bool(hit[row][m].all()),
                    float(token_lp[row][m].sum()),
                    int(m.sum()),
                )
            )
    return scores


def recall(
    model: torch.nn.Module, tokenizer: object, facts: Sequence[Fact], form: str = "statement"
) -> float:
    """Share of facts whose answer greedy decoding reproduces (exact match)."""
    if not facts:
        return 0.0
    scores = score_examples(model, tokenizer, [probe(f, form) for f in facts])
    return sum(s.exact for s in scores) / len(scores)


def recognition_auc(
    model: torch.nn.Module,
    tokenizer: object,
    taught: Sequence[Fact],
    untaught: Sequence[Fact],
) -> float:
    """Probability that a taught fact's answer is likelier (per token) than a never-taught
    one's: the ROC AUC of telling them apart by the model's own likelihood (0.5 = chance)."""
    pos = [s.mean_logprob for s in score_examples(model, tokenizer, [probe(f) for f in taught])]
    neg = [s.mean_logprob for s in score_examples(model, tokenizer, [probe(f) for f in untaught])]
    if not pos or not neg:
        return 0.5
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@torch.no_grad()
def perplexity(
    model: torch.nn.Module, tokenizer: object, texts: Sequence[str], max_length: int = 128
) -> float:
    """Token-level perplexity on general text (every token after the first is scored)."""
    scores = score_examples(model, tokenizer, text_examples(texts), max_length=max_length)
    tokens = sum(s.tokens for s in scores)
    return math.exp(-sum(s.logprob for s in scores) / max(tokens, 1))


@dataclass
class AccuracyMatrix:
    """`rows[i][j]`: accuracy on batch j after training on batch i (all j, also unseen);
    `initial[j]`: the untrained model's accuracy on batch j (for forward transfer)."""

    initial: list[float] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)

    def add_row(self, row: list[float]) -> None:
        self.rows.append(list(row))

    @property
    def final(self) -> list[float]:
        return self.rows[-1] if self.rows else []

    def average_accuracy(self) -> float:
        """Mean accuracy over the batches seen so far, after the last one."""
        t = len(self.rows)
        return sum(self.final[:t]) / t if t else 0.0

    def bwt(self) -> float:
        """Backward transfer: mean of a[T-1][j] - a[j][j] over earlier batches (< 0: forgot)."""
        t = len(self.rows)
        if t < 2:
            return 0.0
        return sum(self.rows[-1][j] - self.rows[j][j] for j in range(t - 1)) / (t - 1)

    def forgetting(self) -> float:
        """Mean over earlier batches of the best accuracy ever reached minus the last one."""
        t = len(self.rows)
        if t < 2:
            return 0.0
        drops = [
            max(self.rows[i][j] for i in range(t - 1)) - self.rows[-1][j] for j in range(t - 1)
        ]
        return sum(drops) / len(drops)

    def forward_transfer(self) -> float:
        """Mean of a[j-1][j] - initial[j]: does learning earlier batches help a new one?"""
        t = len(self.rows)
        if t < 2 or len(self.initial) < t:
            return 0.0
        return sum(self.rows[j - 1][j] - self.initial[j] for j in range(1, t)) / (t - 1)

    def to_dict(self) -> dict[str, object]:
        return {
            "initial": self.initial,
            "rows": self.rows,
            "average_accuracy": self.average_accuracy(),
            "bwt": self.bwt(),
            "forgetting": self.forgetting(),
            "forward_transfer": self.forward_transfer(),
        }
