"""Library noise off the user's terminal: transformers' weight-loading bars, deprecation
FutureWarnings from transformers and peft. Engram's own progress bars stay."""

from __future__ import annotations

import warnings

NOISY_MODULES = r"(transformers|peft|huggingface_hub|sentence_transformers|torch)(\..*)?"


def silence_libraries() -> None:
    """Idempotent; called where a model loads (the CLI, the server and benchmarks alike)."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=NOISY_MODULES)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=NOISY_MODULES)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
