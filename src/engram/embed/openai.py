"""Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, llama.cpp ...)."""

from __future__ import annotations

import numpy as np

from engram.embed.base import Embedder, EmbeddingError
from engram.endpoint import JSONEndpoint
from engram.errors import ConfigError


class OpenAIEmbedder(Embedder):
    """Calls POST {base_url}/embeddings in batches; the dimension is probed if not given."""

    def __init__(
        self,
        model: str | None,
        base_url: str | None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        timeout_s: float = 30.0,
    ):
        if not model or not base_url:
            raise ConfigError("the 'openai' embedder needs embedder.model and embedder.base_url")
        self._endpoint = JSONEndpoint(
            base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            error=EmbeddingError,
            what="embedding endpoint",
        )
        self.name = model
        self.batch_size = batch_size
        self.dim = dimensions or 0
        if not self.dim:
            self.dim = int(self._request(["dimension probe"]).shape[1])

    def _request(self, texts: list[str]) -> np.ndarray:
        body = self._endpoint.post("/embeddings", {"model": self.name, "input": texts})
        try:
            rows = sorted(body["data"], key=lambda row: row["index"])
            return np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise self._endpoint.unexpected(err) from err

    def _embed(self, texts: list[str]) -> np.ndarray:
        parts = [
            self._request(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts)

    def close(self) -> None:
        self._endpoint.close()
