"""The models that answer, loaded once per Memory: a spec (registered name, checkpoint
directory, cached hub id, or 'engram-lm') resolved through engram.models, pulled on first
use when `answer.auto_pull` allows, and kept with its fingerprint and a lock (generation
on one model runs one call at a time)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engram.models.local import checkpoint

if TYPE_CHECKING:
    from engram.config import AnswerConfig
    from engram.parametric.host import AdapterHost


@dataclass
class LoadedModel:
    """A causal LM and its tokenizer, with the identities KV blocks are checked against."""

    name: str
    model: Any
    tokenizer: Any
    fingerprint: str
    tokenizer_hash: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))


@dataclass
class LoadedAdapters:
    """A base model of its own (peft adds layers to it) that adapters are loaded onto."""

    name: str
    host: AdapterHost
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelShelf:
    """Models loaded for answering, by spec; each loads once, on first use."""

    def __init__(self, home: Path, settings: AnswerConfig):
        self.home, self.settings = home, settings
        self._models: dict[str, LoadedModel] = {}
        self._hosts: dict[str, LoadedAdapters] = {}
        self._lock = threading.Lock()

    def _load(self, spec: str) -> tuple[Any, Any]:
        from engram.lm.checkpoint import load_model

        path = checkpoint(spec, self.home, self.settings.auto_pull)
        model, tokenizer = load_model(path)
        model.to(self.settings.device)  # type: ignore[arg-type]  # transformers stub drops self
        return model, tokenizer

    def model(self, spec: str) -> tuple[LoadedModel, float]:
        """The loaded model of `spec`, and the milliseconds loading took now (0: cached)."""
        from engram.activation.fingerprint import model_fingerprint, tokenizer_hash

        with self._lock:
            if spec in self._models:
                return self._models[spec], 0.0
            start = time.perf_counter()
            model, tokenizer = self._load(spec)
            loaded = LoadedModel(
                spec, model, tokenizer, model_fingerprint(model), tokenizer_hash(tokenizer)
            )
            self._models[spec] = loaded
            return loaded, (time.perf_counter() - start) * 1000

    def adapters(self, spec: str) -> tuple[LoadedAdapters, float]:
        """An adapter host on its own copy of `spec`, and the loading milliseconds."""
        from engram.parametric.host import AdapterHost

        with self._lock:
            if spec in self._hosts:
                return self._hosts[spec], 0.0
            start = time.perf_counter()
            hosted = LoadedAdapters(spec, AdapterHost(*self._load(spec)))
            self._hosts[spec] = hosted
            return hosted, (time.perf_counter() - start) * 1000
