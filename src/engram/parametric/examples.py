"""Memories become facts (a cloze: prompt + answer) and facts become training examples."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engram.errors import ValidationError
from engram.types import MemoryItem

_SENTENCE_END = re.compile(r"[.!?]+$")


@dataclass(frozen=True)
class Fact:
    """One thing to know. `prompt + " " + answer` is its statement; `question`, when
    given, adds the "Q: question A: answer" form the model is also taught."""

    memory_id: str
    prompt: str
    answer: str
    question: str | None = None

    @property
    def statement(self) -> str:
        return f"{self.prompt} {self.answer}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "memory_id": self.memory_id,
            "prompt": self.prompt,
            "answer": self.answer,
            "question": self.question,
        }


@dataclass(frozen=True)
class Example:
    """One training sequence: the loss falls on `completion` only (the prompt is context)."""

    prompt: str
    completion: str
    memory_id: str = ""


def fact_from_text(memory_id: str, text: str, answer_words: int = 1) -> Fact:
    """A cloze from free text: the last `answer_words` words are the answer."""
    words = _SENTENCE_END.sub("", text.strip()).split()
    if len(words) <= answer_words:
        raise ValidationError(
            f"memory {memory_id}: {len(words)} word(s) is too short to split into a "
            f"prompt and a {answer_words}-word answer"
        )
    return Fact(memory_id, " ".join(words[:-answer_words]), " ".join(words[-answer_words:]))


def fact_from_memory(item: MemoryItem) -> Fact:
    """A memory's fact: `metadata["fact"] = {"prompt", "answer", "question"?}` when the
    caller gave one, else a cloze of the memory text whose answer is its last word."""
    given = item.metadata.get("fact")
    if given is None:
        return fact_from_text(item.id, item.memory)
    if not isinstance(given, dict) or not {"prompt", "answer"} <= set(given):
        raise ValidationError(
            f"memory {item.id}: metadata 'fact' must be an object with 'prompt' and 'answer'"
        )
    question = given.get("question")
    parts = [given["prompt"], given["answer"], *([question] if question is not None else [])]
    if not all(isinstance(p, str) and p.strip() for p in parts):
        raise ValidationError(f"memory {item.id}: fact prompt, answer and question must be text")
    return Fact(item.id, given["prompt"].strip(), given["answer"].strip(), question)


def facts_from_memories(items: Iterable[MemoryItem]) -> list[Fact]:
    return [fact_from_memory(item) for item in items]


def qa_prompt(question: str) -> str:
    return f"Q: {question} A:"


def examples_for(facts: Sequence[Fact]) -> list[Example]:
    """Each fact's statement, and its question → answer form when it has a question."""
    out: list[Example] = []
    for fact in facts:
        out.append(Example(fact.prompt, f" {fact.answer}.", fact.memory_id))
        if fact.question:
            out.append(Example(qa_prompt(fact.question), f" {fact.answer}", fact.memory_id))
    return out


def text_examples(texts: Sequence[str]) -> list[Example]:
    """General text (replay, perplexity): the loss covers the whole text."""
    return [Example("", text) for text in texts]
