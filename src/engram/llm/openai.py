"""Any OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, vLLM, Ollama, llama.cpp)."""

from __future__ import annotations

from typing import Any

from engram.endpoint import JSONEndpoint
from engram.errors import ConfigError
from engram.llm.base import ChatMessage, ChatModel, LLMError


class OpenAIChat(ChatModel):
    """Calls POST {base_url}/chat/completions at temperature 0 (answers are decisions)."""

    def __init__(
        self,
        model: str | None,
        base_url: str | None,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        max_tokens: int = 1024,
        json_mode: bool = True,
    ):
        if not model or not base_url:
            raise ConfigError("the 'openai' LLM needs llm.model and llm.base_url")
        self._endpoint = JSONEndpoint(
            base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            max_retries=max_retries,
            error=LLMError,
            what="chat endpoint",
        )
        self.name, self.max_tokens, self.json_mode = model, max_tokens, json_mode

    def complete(self, messages: list[ChatMessage], *, json_answer: bool = False) -> str:
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": list(messages),
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if json_answer and self.json_mode:
            payload["response_format"] = {"type": "json_object"}
        body = self._endpoint.post("/chat/completions", payload)
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise self._endpoint.unexpected(err) from err
        if not isinstance(content, str) or not content.strip():
            raise LLMError(f"chat endpoint returned no text (content={content!r})")
        return content

    def close(self) -> None:
        self._endpoint.close()
