"""The answer prompt: the retrieved memories, most relevant at both ends of the context
("Long-Context LLMs Meet RAG": models read the start and the end of a long context best),
then the question.

A prompt is two token runs, the context (instructions and memories) and the question, so
the kv route can read the context from a stored KV block and compute only the question;
the text route computes the same tokens, so both routes see exactly one prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from engram.errors import ValidationError
from engram.llm.base import ChatMessage
from engram.types import SearchHit

INSTRUCTIONS = (
    "Answer the question using the memories below. Reply with a few words. "
    "If the memories do not say, reply that you do not know."
)
_SPLIT = "\x1eengram-question\x1e"  # where the context ends inside the rendered chat
T = TypeVar("T")


def both_ends(ranked: Sequence[T]) -> list[T]:
    """Best-first items reordered so the best sit at both ends: 1 3 5 ... 6 4 2."""
    return [*ranked[0::2], *reversed(ranked[1::2])]


def memory_lines(hits: Sequence[SearchHit]) -> str:
    """One memory a line, speaker first when known (as activation blocks write them)."""
    lines = []
    for hit in hits:
        name = hit.provenance.name
        lines.append(f"- {name}: {hit.memory}" if name else f"- {hit.memory}")
    return "\n".join(lines) if lines else "(none)"


def messages(question: str, ordered: Sequence[SearchHit]) -> list[ChatMessage]:
    """The prompt as chat messages (for a chat template or an endpoint)."""
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": f"Memories:\n{memory_lines(ordered)}\n\nQuestion: {question}"},
    ]


@dataclass(frozen=True)
class AnswerPrompt:
    """The context's and the question's token ids, and the memories in context order."""

    context_ids: list[int]
    question_ids: list[int]
    ordered: list[SearchHit]
    chat: bool  # rendered with the tokenizer's chat template

    @property
    def ids(self) -> list[int]:
        return [*self.context_ids, *self.question_ids]


def _texts(tokenizer: Any, question: str, ordered: Sequence[SearchHit]) -> tuple[str, str, bool]:
    """(context text, question text, chat template used)."""
    if getattr(tokenizer, "chat_template", None):
        chat = messages(question, ordered)
        chat[1]["content"] = chat[1]["content"].replace("\n\nQuestion:", f"\n{_SPLIT}\nQuestion:")
        rendered = str(
            tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        )
        context, _, rest = rendered.partition(_SPLIT)
        return context, rest, True
    context = f"{INSTRUCTIONS}\n\nMemories:\n{memory_lines(ordered)}\n"
    return context, f"\nQuestion: {question}\nAnswer:", False


def build_prompt(tokenizer: Any, question: str, ranked: Sequence[SearchHit]) -> AnswerPrompt:
    """The prompt of `question` over `ranked` (best first) for this tokenizer."""
    ordered = both_ends(ranked)
    context, rest, chat = _texts(tokenizer, question, ordered)
    # a chat template writes its own special tokens; plain text gets the tokenizer's
    context_ids = tokenizer(context, add_special_tokens=not chat)["input_ids"]
    question_ids = tokenizer(rest, add_special_tokens=False)["input_ids"]
    return AnswerPrompt(list(context_ids), list(question_ids), ordered, chat)


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
