"""The contract of an answer route: a job in (the question, the owner, the retrieved
memories, the settings), a `RouteAnswer` out. One class per route, one registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from engram.answer.prompt import AnswerPrompt, fitted_prompt

if TYPE_CHECKING:
    from engram.answer.generation import Generated
    from engram.answer.models import LoadedModel, ModelShelf
    from engram.answer.result import AdapterUse, KVUse
    from engram.config import EngramConfig
    from engram.cube import MemCube
    from engram.parametric.examples import Fact
    from engram.types import SearchHit


@dataclass
class AnswerJob:
    """One question to answer for one owner, with what the route needs."""

    question: str
    owner: str
    cube: MemCube
    config: EngramConfig
    shelf: ModelShelf
    max_tokens: int
    model: str | None  # the caller's model spec; None: answer.model
    hits: list[SearchHit] = field(default_factory=list)  # best first
    matched: Fact | None = None  # route='auto' chose lora for this learned fact

    @property
    def model_spec(self) -> str:
        return self.model if self.model is not None else self.config.answer.model


@dataclass(frozen=True)
class RouteAnswer:
    """What a route produced; `first_token` and `finished` are perf_counter seconds."""

    text: str
    model: str
    ordered: list[SearchHit]  # the memories in prompt order
    prompt_tokens: int | None
    completion_tokens: int | None
    first_token: float | None
    finished: float
    prefill_ms: float | None
    generate_ms: float
    load_ms: float = 0.0
    kv_ms: float = 0.0
    cached_tokens: int = 0
    kv: KVUse | None = None
    adapter: AdapterUse | None = None

    @classmethod
    def generated(
        cls,
        out: Generated,
        *,
        text: str,
        model: str,
        ordered: list[SearchHit],
        prompt_tokens: int,
        load_ms: float,
        **extra: Any,
    ) -> RouteAnswer:
        """What a local generation produced, with its counts and clock readings."""
        return cls(
            text=text,
            model=model,
            ordered=ordered,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(out.tokens),
            first_token=out.first_token,
            finished=out.finished,
            prefill_ms=out.prefill_ms,
            generate_ms=out.generate_ms,
            load_ms=load_ms,
            **extra,
        )


class AnswerRoute(ABC):
    """A way to answer: `answer(job)` runs once per question."""

    name: ClassVar[str]
    retrieves: ClassVar[bool] = True  # the core searches the owner's memories first

    @abstractmethod
    def answer(self, job: AnswerJob) -> RouteAnswer: ...


def local_prompt(job: AnswerJob) -> tuple[LoadedModel, float, AnswerPrompt]:
    """The local model (and its loading ms) and the prompt that fits it."""
    loaded, load_ms = job.shelf.model(job.model_spec)
    budget = min(loaded.positions, job.config.answer.max_context_tokens) - job.max_tokens
    prompt = fitted_prompt(loaded.tokenizer, job.question, job.hits, budget)
    return loaded, load_ms, prompt


def clean(text: str, chat: bool) -> str:
    """The answer as shown: a model without a chat template stops at the line's end."""
    text = text.strip()
    return text if chat else text.split("\n", 1)[0].strip()
