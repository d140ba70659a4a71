"""The chat-model contract: a list of chat messages in, the assistant's text out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypedDict

from engram.errors import EngramError


class LLMError(EngramError):
    """The language model failed (endpoint down, timeout, empty or unusable answer)."""

    code = "llm_failed"


class ChatMessage(TypedDict):
    role: str  # system, user, assistant
    content: str


def chat_prompt(tokenizer: Any, messages: Sequence[ChatMessage]) -> tuple[str, bool]:
    """A local model's prompt text for `messages`, and whether the tokenizer's chat
    template wrote it; without a template: 'role: content' lines, then 'assistant:'."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return str(text), True
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"]), False


class ChatModel(ABC):
    """A chat model; `name` identifies it in provenance and logs."""

    name: str

    @abstractmethod
    def complete(self, messages: list[ChatMessage], *, json_answer: bool = False) -> str:
        """The model's answer to `messages`; `json_answer` asks for a JSON object where
        the backend can enforce it. LLMError when no answer came back."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, models)."""
