"""A local transformers causal LM as a chat model (greedy decoding, CPU by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from engram.llm.base import ChatMessage, ChatModel, LLMError, chat_prompt

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel


class TransformersChat(ChatModel):
    """Generates with a local checkpoint (None: the packaged Engram LM). A tokenizer with a
    chat template formats the messages; otherwise they are written as 'role: content'
    lines followed by 'assistant:'."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_new_tokens: int = 256,
        device: str = "cpu",
        loaded: tuple[Any, Any] | None = None,
    ):
        """`loaded`: an already built (model, tokenizer) pair instead of a path."""
        if loaded is None:
            from engram.lm import load_model

            loaded = load_model(model)
        self.model: PreTrainedModel
        self.model, self.tokenizer = loaded
        self.model.to(device)  # type: ignore[arg-type]  # transformers' @wraps stub drops self
        self.model.eval()
        self.device, self.max_new_tokens = device, max_new_tokens
        self.name = str(model) if model is not None else "engram-lm"

    def prompt(self, messages: list[ChatMessage]) -> str:
        return chat_prompt(self.tokenizer, messages)[0]

    def complete(self, messages: list[ChatMessage], *, json_answer: bool = False) -> str:
        limit = int(getattr(self.model.config, "max_position_embeddings", 2048))
        ids = self.tokenizer(self.prompt(messages), return_tensors="pt")["input_ids"]
        ids = ids[:, -max(1, limit - self.max_new_tokens) :].to(self.device)  # keep the end
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            out = cast("GenerationMixin", self.model).generate(  # a causal LM: it generates
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad if pad is not None else self.tokenizer.eos_token_id,
            )
        text = self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        if not text.strip():
            raise LLMError(f"local model {self.name!r} generated no text")
        return str(text)
