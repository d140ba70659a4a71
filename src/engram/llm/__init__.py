"""Language-model providers, one registry read by config parsing and construction.
Nothing in Engram's default path needs one (`llm.provider = "none"`)."""

from __future__ import annotations

from collections.abc import Callable

from engram.config import LLMConfig
from engram.errors import ConfigError
from engram.llm.base import ChatMessage, ChatModel, LLMError

LLMFactory = Callable[[LLMConfig], ChatModel]
LLMS: dict[str, LLMFactory] = {}


def register_llm(name: str, factory: LLMFactory) -> None:
    LLMS[name] = factory


def _openai(cfg: LLMConfig) -> ChatModel:
    from engram.llm.openai import OpenAIChat

    return OpenAIChat(
        cfg.model,
        cfg.base_url,
        cfg.api_key,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        max_tokens=cfg.max_tokens,
        json_mode=cfg.json_mode,
    )


def _transformers(cfg: LLMConfig) -> ChatModel:
    from engram.llm.local import TransformersChat

    return TransformersChat(cfg.model, max_new_tokens=cfg.max_tokens, device=cfg.device)


register_llm("openai", _openai)
register_llm("transformers", _transformers)


def build_llm(cfg: LLMConfig) -> ChatModel | None:
    """The configured chat model, or None for provider 'none'."""
    if cfg.provider == "none":
        return None
    factory = LLMS.get(cfg.provider)
    if factory is None:
        known = ["none", *sorted(LLMS)]
        raise ConfigError(f"unknown llm provider {cfg.provider!r}; known: {known}")
    return factory(cfg)


__all__ = ["LLMS", "ChatMessage", "ChatModel", "LLMError", "build_llm", "register_llm"]
