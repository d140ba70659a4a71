"""Greedy generation with a clock: when the first answer token came (prefill) and when the
last did. transformers' `generate` hands a streamer the prompt first and then each new
token, so the second hand-over is the first token. `TextStream` hands the text over while
it is generated (the chat endpoint's streaming)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer, TextIteratorStreamer


class TokenClock(BaseStreamer):
    """Records when generation started, when its first token and its last arrived."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.end_at: float | None = None
        self._puts = 0

    def put(self, value: Any) -> None:
        self._puts += 1
        if self._puts == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        self.end_at = time.perf_counter()


@dataclass(frozen=True)
class Generated:
    """An answer's tokens and text, and the clock readings (perf_counter seconds)."""

    tokens: list[int]
    text: str
    started: float
    first_token: float
    finished: float

    @property
    def prefill_ms(self) -> float:
        return (self.first_token - self.started) * 1000

    @property
    def generate_ms(self) -> float:
        return (self.finished - self.first_token) * 1000


def _options(tokenizer: Any, max_new_tokens: int, clock: TokenClock) -> dict[str, Any]:
    pad = tokenizer.pad_token_id
    return {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "temperature": None,  # greedy: a checkpoint's sampling defaults do not apply
        "top_p": None,
        "top_k": None,
        "pad_token_id": pad if pad is not None else tokenizer.eos_token_id,
        "streamer": clock,
    }


def timed(
    run: Callable[[dict[str, Any]], Sequence[int]], tokenizer: Any, max_new_tokens: int
) -> Generated:
    """Run a generation (`run(options)` returns the new token ids) on the clock."""
    clock = TokenClock()
    with torch.no_grad():
        tokens = [int(t) for t in run(_options(tokenizer, max_new_tokens, clock))]
    finished = clock.end_at or time.perf_counter()
    first = clock.first or finished
    text = str(tokenizer.decode(tokens, skip_special_tokens=True))
    return Generated(tokens, text, clock.start, first, finished)


def generate(model: Any, tokenizer: Any, ids: Sequence[int], max_new_tokens: int) -> Generated:
    """Greedy continuation of `ids`, computing the whole prompt."""

    def run(options: dict[str, Any]) -> Sequence[int]:
        device = next(model.parameters()).device
        prompt = torch.tensor([list(ids)], device=device)
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), **options)
        return [int(t) for t in out[0, prompt.shape[1] :].tolist()]

    return timed(run, tokenizer, max_new_tokens)


class _CountingStreamer(TextIteratorStreamer):
    """Decoded text pieces as they are generated (the prompt skipped), and their count."""

    def __init__(self, tokenizer: Any):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.tokens = 0

    def put(self, value: Any) -> None:
        if not self.next_tokens_are_prompt:
            self.tokens += int(value.numel())
        super().put(value)


class _Stopped(StoppingCriteria):
    """Ends a generation once its consumer has asked to stop."""

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool)


class TextStream:
    """A greedy generation running in a thread, read as text pieces while it runs
    (transformers' TextIteratorStreamer). `tokens` counts the new tokens so far; `stop()`
    ends it early (the consumer is gone, or has read enough). The model's `lock` is held
    by the generating thread, so calls on one model still generate one at a time."""

    def __init__(
        self, model: Any, tokenizer: Any, ids: Sequence[int], max_new_tokens: int, lock: Any
    ):
        self._streamer = _CountingStreamer(tokenizer)
        self._stop = threading.Event()
        self._failure: Exception | None = None
        options = _options(tokenizer, max_new_tokens, TokenClock())
        options["streamer"] = self._streamer
        options["stopping_criteria"] = StoppingCriteriaList([_Stopped(self._stop)])

        def run() -> None:
            try:
                with lock, torch.no_grad():
                    device = next(model.parameters()).device
                    prompt = torch.tensor([list(ids)], device=device)
                    model.generate(prompt, attention_mask=torch.ones_like(prompt), **options)
            except Exception as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
                self._failure = err
            finally:
                self._streamer.end()  # a second end() after generate's own is harmless

        self._thread = threading.Thread(target=run, name="engram-generate", daemon=True)
        self._thread.start()

    @property
    def tokens(self) -> int:
        return self._streamer.tokens

    def __iter__(self) -> Iterator[str]:
        for piece in self._streamer:
            if piece:
                yield piece
        self._thread.join()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        self._stop.set()
