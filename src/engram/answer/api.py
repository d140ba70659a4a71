"""`Memory.answer`: a question answered from an owner's memories. Validation happens here,
before any model loads, so every surface gets the same refusal; the work is in
engram.answer.core. Mixed into Memory so memory.py stays small; AsyncMemory wraps it."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from engram.compose import parse_cubes
from engram.errors import ValidationError
from engram.scope import Scope
from engram.text.ingest import check_text

if TYPE_CHECKING:
    from engram.answer.models import LoadedModel, ModelShelf
    from engram.answer.result import AnswerResult
    from engram.config import EngramConfig

AUTO = "auto"
MAX_TOKENS = 4096


def _count(value: object, what: str, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise ValidationError(f"{what} must be an integer from 1 to {high}")
    return value


class AnswerVerbs:
    """Memory's `answer` verb and the models it keeps loaded."""

    if TYPE_CHECKING:
        config: EngramConfig
        _lock: threading.Lock

    _answer_shelf: ModelShelf | None = None

    def _shelf(self) -> ModelShelf:
        from engram.answer.models import ModelShelf

        with self._lock:
            if self._answer_shelf is None:
                self._answer_shelf = ModelShelf(self.config.home, self.config.answer)
            return self._answer_shelf

    def answer_model(self, model: str | None = None) -> LoadedModel:
        """The local model `answer` uses (`model`, default answer.model), loaded once and
        kept: the chat endpoint and the scheduler share it with the answer routes."""
        loaded, _ = self._shelf().model(model or self.config.answer.model)
        return loaded

    def answer(
        self,
        question: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        route: str = AUTO,
        k: int | None = None,
        max_tokens: int | None = None,
        model: str | None = None,
        cubes: Iterable[str] | None = None,
    ) -> AnswerResult:
        """Answer `question` from the owner's memories. `route`: 'text' (retrieve, read as
        text), 'kv' (retrieve, read the context from a stored KV block), 'lora' (the owner's
        adapter, no retrieval) or 'auto' (the router picks; see docs/answer.md). `k`
        memories (default answer.k), at most `max_tokens` (default answer.max_tokens),
        `model` overrides answer.model. The text route retrieves from the owner's cube and
        the cubes it mounts (`cubes`: only these; docs/compose.md), kv from its own only.
        The result holds the answer, the memories used with provenance, the route and
        why, and timings."""
        from engram.answer.core import AnswerRequest, run_answer
        from engram.answer.routes import ROUTES

        settings = self.config.answer
        question = check_text(question, self.config.limits.max_query_chars, "question")
        if not isinstance(route, str) or (route != AUTO and route not in ROUTES):
            known = ", ".join([AUTO, *sorted(ROUTES)])
            raise ValidationError(f"unknown answer route {route!r}; known: {known}")
        k = settings.k if k is None else _count(k, "k", self.config.search.max_k)
        max_tokens = settings.max_tokens if max_tokens is None else max_tokens
        max_tokens = _count(max_tokens, "max_tokens", MAX_TOKENS)
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ValidationError("model must be a model name or a checkpoint path")
        scope = Scope.of(user_id, agent_id)
        chosen = None if cubes is None else parse_cubes(cubes)
        request = AnswerRequest(
            question, user_id, agent_id, scope, route, k, max_tokens, model, chosen
        )
        return run_answer(self, self._shelf(), request)  # type: ignore[arg-type]
