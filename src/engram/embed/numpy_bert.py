"""A BERT sentence encoder in numpy: the packaged all-MiniLM-L6-v2 without importing torch.

The CLI embeds one query per process; torch + sentence-transformers take ~4 s to import
and load, this encoder ~0.2 s, with embeddings equal to the torch path (cosine >= 0.9999,
tests/test_embedders.py). It runs any sentence-transformers directory whose first module is
a `BertModel` with mean pooling; anything else is refused with the provider to use instead.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engram.embed.adapter import Adapter, adapter_for
from engram.embed.base import Embedder, EmbeddingError
from engram.embed.local import DEFAULT_MODEL_NAME, packaged_model_path
from engram.errors import ConfigError, MissingExtraError

# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32 resolution of GELU's inputs.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf(x: np.ndarray) -> np.ndarray:
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + _ERF_P * a)
    a1, a2, a3, a4, a5 = _ERF_A
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU that BERT's `hidden_act: gelu` means."""
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * weight + bias


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return data


def _check_mean_pooling(path: Path) -> None:
    pooling = path / "1_Pooling" / "config.json"
    if not pooling.is_file():
        raise ConfigError(
            f"{path} has no 1_Pooling/config.json; use provider 'sentence-transformers'"
        )
    modes = _read_json(pooling)
    if "pooling_mode" in modes:  # sentence-transformers >= 5 saves one mode by name
        mean = modes["pooling_mode"] == "mean"
    else:  # older ones save one flag per mode
        others = [
            k
            for k, v in modes.items()
            if k.startswith("pooling_mode") and v and "mean_tokens" not in k
        ]
        mean = bool(modes.get("pooling_mode_mean_tokens")) and not others
    if not mean:
        raise ConfigError(
            f"{path} does not use mean pooling alone; use provider 'sentence-transformers'"
        )


class NumpyBertEmbedder(Embedder):
    """A sentence-transformers BERT model (mean pooling) evaluated with numpy matmuls."""

    def __init__(self, model: str | None = None, batch_size: int = 32, adapter: str = "auto"):
        path = Path(model).expanduser() if model else packaged_model_path()
        if not path.is_dir():
            raise ConfigError(
                f"embedder model {str(path)!r} is not a directory; give a local "
                "sentence-transformers model path (models are never downloaded at run time)"
            )
        config = _read_json(path / "config.json")
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise ConfigError(
                f"the numpy encoder runs BERT models with GELU; {path} is "
                f"{config.get('model_type')!r}: use provider 'sentence-transformers'"
            )
        _check_mean_pooling(path)
        st_config = path / "sentence_bert_config.json"
        self.max_length = int(
            _read_json(st_config).get("max_seq_length", 512) if st_config.is_file() else 512
        )
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dim = int(config["hidden_size"])
        self.name = DEFAULT_MODEL_NAME if model is None else path.name
        self.batch_size = batch_size
        self.adapter = adapter_for(adapter, model, self.name)
        if self.adapter is not None:
            self.name = f"{self.name}+{self.adapter.name}"
        self._weights = self._load_weights(path, self.adapter)
        self._tokenizer = self._load_tokenizer(path)
        self._lock = threading.Lock()

    @staticmethod
    def _load_weights(path: Path, adapter: Adapter | None) -> dict[str, np.ndarray]:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        file = path / "model.safetensors"
        try:
            raw = load_file(str(file))
        except (OSError, SafetensorError) as err:
            raise ConfigError(f"cannot load {file}: {err}") from err
        # sentence-transformers saves `BertModel` weights with or without a "bert." prefix
        weights = {k.removeprefix("bert."): v for k, v in raw.items()}
        if adapter is not None:
            weights = adapter.apply(weights)
        # pre-transpose linear weights once: x @ W.T on every call would copy them
        return {
            k: (np.ascontiguousarray(v.T) if v.ndim == 2 and k.startswith("encoder.") else v)
            for k, v in weights.items()
        }

    def _load_tokenizer(self, path: Path) -> Any:
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise MissingExtraError(
                "the numpy encoder needs tokenizers: pip install tokenizers"
            ) from err
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=self.max_length)
        tokenizer.no_padding()
        return tokenizer

    def _embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
            ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            # batches of similar length pad little
            order = np.argsort([len(i) for i in ids], kind="stable")
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, ids: list[np.ndarray]) -> np.ndarray:
        w = self._weights
        width = max(len(i) for i in ids)
        if width == 0:
            raise EmbeddingError("the tokenizer produced no tokens")
        tokens = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.float32)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)], mask[row, : len(seq)] = seq, 1.0
        x = (
            w["embeddings.word_embeddings.weight"][tokens]
            + w["embeddings.position_embeddings.weight"][:width]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        bias = ((1.0 - mask) * np.float32(np.finfo(np.float32).min))[:, None, None, :]
        for layer in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{layer}.")
        summed = (x * mask[:, :, None]).sum(axis=1)
        return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        w = self._weights
        n, t, d = x.shape
        h = self.heads

        def linear(v: np.ndarray, name: str) -> np.ndarray:
            return v @ w[f"{p}{name}.weight"] + w[f"{p}{name}.bias"]

        def split(v: np.ndarray) -> np.ndarray:
            return v.reshape(n, t, h, d // h).transpose(0, 2, 1, 3)

        q = split(linear(x, "attention.self.query"))
        k = split(linear(x, "attention.self.key"))
        v = split(linear(x, "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d // h)) + bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
        x = _layer_norm(
            linear(context, "attention.output.dense") + x,
            w[f"{p}attention.output.LayerNorm.weight"],
            w[f"{p}attention.output.LayerNorm.bias"],
            self.eps,
        )
        hidden = _gelu(linear(x, "intermediate.dense"))
        return _layer_norm(
            linear(hidden, "output.dense") + x,
            w[f"{p}output.LayerNorm.weight"],
            w[f"{p}output.LayerNorm.bias"],
            self.eps,
        )
