"""What writes the reply of `POST /v1/chat/completions`: the local model (`answer.model`,
generating in a thread while the text streams out) or, with `answer.provider = "llm"`, the
OpenAI-compatible endpoint of the `llm` section, relayed. Both hand over OpenAI
`chat.completion.chunk` dicts; a whole reply is built from the same chunks (local) or
relayed as the endpoint sent it (upstream).

The owner's memories go in as one system message listed as `Memory.answer` lists them
(engram.answer.prompt: one a line, the most relevant at both ends)."""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from engram.answer.prompt import both_ends, memory_lines
from engram.errors import ConfigError, ValidationError
from engram.llm.base import ChatMessage, LLMError, chat_prompt

if TYPE_CHECKING:
    from engram.answer.generation import TextStream
    from engram.config import EngramConfig, LLMConfig
    from engram.memory import Memory
    from engram.types import SearchHit

ENGRAM_MODEL = "engram"  # the alias every server answers to, whatever model is behind it
CHUNK = "chat.completion.chunk"
MEMORY_INSTRUCTIONS = (
    "What you remember about the user from earlier conversations is listed below, the most "
    "relevant first and last. Use it when it helps; when it does not say, do not guess."
)
_LEADING = ("system", "developer")


class UpstreamError(LLMError):
    """The upstream chat endpoint failed or answered an error (the server says 502)."""

    code = "upstream_failed"


@dataclass
class ChatJob:
    """A validated chat request: the conversation as the client sent it, the memories
    retrieved for it (best first), and the reply's settings."""

    conversation: list[ChatMessage]
    hits: list[SearchHit]
    max_tokens: int
    max_tokens_field: str  # max_tokens or max_completion_tokens: what an upstream gets
    stream: bool
    include_usage: bool
    extra: dict[str, Any] = field(default_factory=dict)  # other OpenAI parameters


def memory_message(hits: Sequence[SearchHit]) -> ChatMessage:
    return {
        "role": "system",
        "content": f"{MEMORY_INSTRUCTIONS}\n\nMemories:\n{memory_lines(both_ends(hits))}",
    }


def with_memories(
    conversation: Sequence[ChatMessage], hits: Sequence[SearchHit]
) -> list[ChatMessage]:
    """The conversation with the memories' system message after the client's own leading
    system (or developer) messages; unchanged when there are no memories."""
    if not hits:
        return list(conversation)
    at = 0
    while at < len(conversation) and conversation[at]["role"] in _LEADING:
        at += 1
    return [*conversation[:at], memory_message(hits), *conversation[at:]]


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def served_model(config: EngramConfig) -> str:
    """The model id this server answers with (GET /v1/models lists it and `engram`)."""
    if config.answer.provider == "llm":
        return _upstream_settings(config).model or ""
    return config.answer.model


def _upstream_settings(config: EngramConfig) -> LLMConfig:
    settings = config.llm
    if settings.provider != "openai" or not settings.base_url or not settings.model:
        raise ConfigError(
            "answer.provider 'llm' makes /v1/chat/completions relay to the llm section's "
            "endpoint: it needs llm.provider = 'openai', llm.base_url and llm.model"
        )
    return settings


class Reply(ABC):
    """One reply being written. `used` are the memories in its prompt (best first)."""

    used: list[SearchHit]
    model: str

    @abstractmethod
    def chunks(self) -> Iterator[dict[str, Any]]:
        """The reply as OpenAI chunk dicts, as they come (stream: true)."""

    @abstractmethod
    def completion(self) -> dict[str, Any]:
        """The whole reply as an OpenAI `chat.completion` dict (stream: false)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop what is still running (the client went away) and release it."""


def open_reply(memory: Memory, job: ChatJob) -> Reply:
    """The reply of `job` by the configured writer, ready to run: the local model loaded
    and the prompt fitted, or the upstream stream opened, so that a failure here is still
    an HTTP error status rather than an event inside a started stream."""
    config = memory.config
    if config.answer.provider == "llm":
        return UpstreamReply(_upstream_settings(config), job)
    return LocalReply(memory, job)


# -- the local model --------------------------------------------------------------------

# OpenAI parameters the local model accepts and does not use: it decodes greedily
LOCAL_IGNORED = frozenset(
    {"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "user"}
)
# parameters whose default value asks for nothing more
_HARMLESS = {"n": 1, "logprobs": False, "response_format": {"type": "text"}}


def check_local_parameters(extra: dict[str, Any]) -> None:
    """Refuse what the local model cannot do (tools, several choices, stop strings ...)
    rather than ignoring it; sampling settings are accepted and unused (greedy)."""
    for name, value in extra.items():
        if name in LOCAL_IGNORED or value is None or _HARMLESS.get(name, object()) == value:
            continue
        raise ValidationError(
            f"{name!r} is not supported by the local model (answer.provider = 'local'); "
            f"it answers with text only, one choice, greedily ({', '.join(sorted(LOCAL_IGNORED))} "
            "are accepted and unused)"
        )


def render(tokenizer: Any, messages: Sequence[ChatMessage]) -> tuple[str, bool]:
    """The prompt text, and whether the tokenizer's chat template wrote it; without one,
    'role: content' lines then 'assistant:' (as engram.llm.local writes them)."""
    plain: list[ChatMessage] = [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
        for m in messages
    ]
    return chat_prompt(tokenizer, plain)


def fitted(
    tokenizer: Any, conversation: list[ChatMessage], hits: list[SearchHit], budget: int
) -> tuple[list[int], list[SearchHit], bool]:
    """The prompt's token ids within `budget`, the memories kept and whether a chat
    template wrote it. The least relevant memories go first, then the oldest turns (the
    client's leading system messages and the last message stay)."""
    turns, kept = list(conversation), list(hits)
    while True:
        text, chat = render(tokenizer, with_memories(turns, kept))
        ids = list(tokenizer(text, add_special_tokens=not chat)["input_ids"])
        if len(ids) <= budget:
            return ids, kept, chat
        if kept:
            kept.pop()
            continue
        oldest = next((i for i, m in enumerate(turns[:-1]) if m["role"] not in _LEADING), None)
        if oldest is None:
            raise ValidationError(
                f"the conversation takes {len(ids)} tokens; this model, max_tokens and "
                f"answer.max_context_tokens leave {budget} for the prompt"
            )
        del turns[oldest]


def _first_line(pieces: Iterator[str], stop: Any) -> Iterator[str]:
    """A model without a chat template goes on writing the next turn: keep its first
    line (as Memory.answer's text route does), leading blank space dropped."""
    started = False
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        head, newline, _ = piece.partition("\n")
        if head:
            yield head
        if newline and started:
            stop()
            return


class LocalReply(Reply):
    """`answer.model`, loaded once per Memory (the models `Memory.answer` uses)."""

    def __init__(self, memory: Memory, job: ChatJob):
        check_local_parameters(job.extra)
        loaded = memory.answer_model()
        budget = min(loaded.positions, memory.config.answer.max_context_tokens) - job.max_tokens
        if budget <= 0:
            raise ValidationError(
                f"max_tokens {job.max_tokens} leaves no room for the prompt within "
                f"{budget + job.max_tokens} tokens (answer.max_context_tokens, the model's)"
            )
        self.ids, self.used, self.chat = fitted(
            loaded.tokenizer, job.conversation, job.hits, budget
        )
        self.loaded, self.job, self.model = loaded, job, loaded.name
        self.id, self.created = completion_id(), int(time.time())
        self._stream: TextStream | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return self._envelope([choice])

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": CHUNK,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _usage(self, completion_tokens: int) -> dict[str, int]:
        prompt = len(self.ids)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }

    def chunks(self) -> Iterator[dict[str, Any]]:
        from engram.answer.generation import TextStream

        loaded, limit = self.loaded, self.job.max_tokens
        stream = TextStream(loaded.model, loaded.tokenizer, self.ids, limit, loaded.lock)
        self._stream = stream
        yield self._chunk({"role": "assistant", "content": ""})
        pieces = iter(stream) if self.chat else _first_line(iter(stream), stream.stop)
        for piece in pieces:
            yield self._chunk({"content": piece})
        finish = "length" if stream.tokens >= limit else "stop"
        yield self._chunk({}, finish)
        if self.job.include_usage:
            yield {**self._envelope([]), "usage": self._usage(stream.tokens)}

    def completion(self) -> dict[str, Any]:
        text, finish = [], "stop"
        for chunk in self.chunks():
            for choice in chunk["choices"]:
                text.append(choice["delta"].get("content") or "")
                finish = choice["finish_reason"] or finish
        tokens = self._stream.tokens if self._stream is not None else 0
        message = {"role": "assistant", "content": "".join(text).strip()}
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        body = {**self._envelope([choice]), "object": "chat.completion"}
        return {**body, "usage": self._usage(tokens)}

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()


# -- an upstream OpenAI-compatible endpoint ---------------------------------------------


class UpstreamReply(Reply):
    """The request, memories injected, relayed to `llm.base_url`/chat/completions."""

    def __init__(self, settings: LLMConfig, job: ChatJob):
        self.used, self.model = list(job.hits), str(settings.model)
        self.payload: dict[str, Any] = {
            **job.extra,
            "model": self.model,
            "messages": with_memories(job.conversation, job.hits),
            job.max_tokens_field: job.max_tokens,
            "stream": job.stream,
        }
        if job.stream and job.include_usage:
            self.payload["stream_options"] = {"include_usage": True}
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.where = f"upstream chat endpoint {settings.base_url}"
        self._client = httpx.Client(
            base_url=str(settings.base_url).rstrip("/"), headers=headers, timeout=settings.timeout_s
        )
        self._response: httpx.Response | None = None
        if job.stream:  # opened now: an upstream refusal is still a status, not an event
            try:
                request = self._client.build_request("POST", "/chat/completions", json=self.payload)
                self._response = self._client.send(request, stream=True)
                if self._response.status_code >= 400:
                    self._response.read()
                    raise self._refused(self._response)
            except httpx.HTTPError as err:
                self.close()
                raise UpstreamError(f"{self.where} failed: {err}") from err
            except UpstreamError:
                self.close()
                raise

    def _refused(self, response: httpx.Response) -> UpstreamError:
        text = response.text[:500]
        return UpstreamError(f"{self.where} answered {response.status_code}: {text}")

    def chunks(self) -> Iterator[dict[str, Any]]:
        assert self._response is not None, "opened with stream: false"
        try:
            for line in self._response.iter_lines():
                data = line.removeprefix("data:").strip() if line.startswith("data:") else None
                if not data:
                    continue  # blank separators, comments, event names
                if data == "[DONE]":
                    return
                yield self._decoded(data)
        except httpx.HTTPError as err:
            raise UpstreamError(f"{self.where} failed mid-stream: {err}") from err

    def _decoded(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as err:
            raise UpstreamError(f"{self.where} sent an event that is not JSON: {err}") from err
        if not isinstance(chunk, dict):
            raise UpstreamError(f"{self.where} sent an event that is not a JSON object")
        return chunk

    def completion(self) -> dict[str, Any]:
        try:
            response = self._client.post("/chat/completions", json=self.payload)
        except httpx.HTTPError as err:
            raise UpstreamError(f"{self.where} failed: {err}") from err
        if response.status_code >= 400:
            raise self._refused(response)
        body = self._decoded(response.text)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamError(f"{self.where} answered without choices")
        return body

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._client.close()
