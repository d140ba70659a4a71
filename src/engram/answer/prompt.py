"""The answer prompt: the retrieved memories, most relevant at both ends of the context
("Long-Context LLMs Meet RAG": models read the start and the end of a long context best),
then the question.

A prompt is token runs, the context (instructions, then one run per memory) and the
question, so the kv route can read the context from stored KV blocks and compute only the
question; the text route computes the same tokens, so both routes see exactly one prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from engram.errors import ValidationError
from engram.llm.base import ChatMessage
from engram.types import MemoryItem, SearchHit

INSTRUCTIONS = (
    "Answer the question using the memories below. Reply with a few words. "
    "If the memories do not say, reply that you do not know."
)
_SPLIT = "\x1eengram-question\x1e"  # where the context ends inside the rendered chat
T = TypeVar("T")


def both_ends(ranked: Sequence[T]) -> list[T]:
    """Best-first items reordered so the best sit at both ends: 1 3 5 ... 6 4 2."""
    return [*ranked[0::2], *reversed(ranked[1::2])]


def memory_line(hit: SearchHit | MemoryItem) -> str:
    """One memory as a prompt line, speaker first when known (as activation blocks write it)."""
    name = hit.provenance.name
    return f"- {name}: {hit.memory}" if name else f"- {hit.memory}"


def memory_lines(hits: Sequence[SearchHit]) -> str:
    return "\n".join(memory_line(hit) for hit in hits) if hits else "(none)"


def messages(question: str, ordered: Sequence[SearchHit]) -> list[ChatMessage]:
    """The prompt as chat messages (for a chat template or an endpoint)."""
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": f"Memories:\n{memory_lines(ordered)}\n\nQuestion: {question}"},
    ]


@dataclass(frozen=True)
class AnswerPrompt:
    """The prompt as token runs: the head (instructions, the same for every prompt), one
    segment per memory (its line, in context order), and the question. Each run is
    tokenized on its own, so a memory's tokens are the same in every prompt it is in and
    its KV block composes (engram.activation.compose)."""

    head_ids: list[int]
    segment_ids: list[list[int]]
    question_ids: list[int]
    ordered: list[SearchHit]
    chat: bool  # rendered with the tokenizer's chat template

    @property
    def context_ids(self) -> list[int]:
        return [*self.head_ids, *(t for segment in self.segment_ids for t in segment)]

    @property
    def ids(self) -> list[int]:
        return [*self.context_ids, *self.question_ids]


def _texts(tokenizer: Any, question: str, listed: bool) -> tuple[str, str, bool]:
    """(head text, question text, chat template used); the memory lines go between
    (`listed`), or the head says there are none."""
    none = "" if listed else "(none)\n"
    if getattr(tokenizer, "chat_template", None):
        chat = messages(question, [])
        chat[1]["content"] = f"Memories:\n{none}{_SPLIT}\nQuestion: {question}"
        rendered = str(
            tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        )
        head, _, rest = rendered.partition(_SPLIT)
        return head, rest, True
    return f"{INSTRUCTIONS}\n\nMemories:\n{none}", f"\nQuestion: {question}\nAnswer:", False


def prompt_head(tokenizer: Any) -> list[int]:
    """The head of every prompt that lists memories: what their segments are built after."""
    head, _, chat = _texts(tokenizer, "", True)
    # a chat template writes its own special tokens; plain text gets the tokenizer's
    return list(tokenizer(head, add_special_tokens=not chat)["input_ids"])


def memory_segment(tokenizer: Any, memory: SearchHit | MemoryItem) -> list[int]:
    """One memory's line, tokenized on its own: the same tokens in every prompt."""
    return list(tokenizer(f"{memory_line(memory)}\n", add_special_tokens=False)["input_ids"])


def build_prompt(tokenizer: Any, question: str, ranked: Sequence[SearchHit]) -> AnswerPrompt:
    """The prompt of `question` over `ranked` (best first) for this tokenizer."""
    ordered = both_ends(ranked)
    head, rest, chat = _texts(tokenizer, question, bool(ordered))
    head_tokens = tokenizer(head, add_special_tokens=not chat)["input_ids"]
    segments = [memory_segment(tokenizer, hit) for hit in ordered]
    question_ids = tokenizer(rest, add_special_tokens=False)["input_ids"]
    return AnswerPrompt(list(head_tokens), segments, list(question_ids), ordered, chat)


def fitted_prompt(
    tokenizer: Any, question: str, ranked: Sequence[SearchHit], budget: int
) -> AnswerPrompt:
    """The prompt with as many of the best memories as fit in `budget` tokens."""
    kept = list(ranked)
    while True:
        prompt = build_prompt(tokenizer, question, kept)
        if len(prompt.ids) <= budget:
            return prompt
        if len(kept) <= 1:
            raise ValidationError(
                f"the prompt takes {len(prompt.ids)} tokens with {len(kept)} memories; this "
                f"model and answer.max_context_tokens leave {budget} for it"
            )
        kept.pop()  # the least relevant memory goes first
