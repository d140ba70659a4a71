"""Embedders: the packaged MiniLM, the LRU cache, and an OpenAI-compatible HTTP endpoint."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from _engram_helpers import HashEmbedder
from engram import Memory
from engram.config import EmbedderConfig
from engram.embed import (
    CachedEmbedder,
    CoalescingEmbedder,
    Embedder,
    EmbeddingError,
    build_embedder,
)
from engram.embed.openai import OpenAIEmbedder


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- the default local model -----------------------------------------------------------------------


def test_default_embedder_is_minilm(embedder: Embedder) -> None:
    assert embedder.name == "all-MiniLM-L6-v2+conv-v2"  # the packaged adapter (auto)
    assert embedder.dim == 384
    vectors = embedder.embed(["hello world", "another sentence", "ünïcödé ☃ text"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    assert np.allclose(embedder.embed_one("hello world"), vectors[0], atol=1e-6)


def test_similar_sentences_are_closer_than_unrelated(embedder: Embedder) -> None:
    a, b, c, d = embedder.embed(
        [
            "The cat sat on the mat.",
            "A kitten was sitting on the rug.",
            "Quarterly earnings beat analyst expectations.",
            "The company's profits exceeded forecasts this quarter.",
        ]
    )
    assert a @ b > a @ c + 0.2
    assert a @ b > a @ d + 0.2
    assert c @ d > c @ a + 0.2


def test_embeddings_are_deterministic_and_batch_independent(embedder: Embedder) -> None:
    inner = embedder.inner if isinstance(embedder, CachedEmbedder) else embedder
    alone = inner.embed(["The train was late again."])[0]
    batched = inner.embed(["Something else entirely.", "The train was late again.", "x"])[1]
    assert np.allclose(alone, batched, atol=1e-5)


# -- the LRU cache ---------------------------------------------------------------------------------


def test_cached_embedder_counts_hits_and_returns_identical_vectors(embedder: Embedder) -> None:
    inner = embedder.inner if isinstance(embedder, CachedEmbedder) else embedder
    cached = CachedEmbedder(inner, capacity=16)
    assert (cached.name, cached.dim) == (inner.name, inner.dim)
    texts = ["apples", "oranges", "apples", "pears"]
    first = cached.embed(texts)
    assert (cached.hits, cached.misses) == (0, 3)  # the repeated text is embedded once
    assert np.array_equal(first[0], first[2])
    again = cached.embed(["pears", "apples"])
    assert (cached.hits, cached.misses) == (2, 3)
    assert np.array_equal(again, first[[3, 0]])
    direct = inner.embed(texts)
    assert np.allclose(first, direct, atol=1e-6)


def test_cache_does_not_call_the_model_on_a_hit_and_evicts_lru() -> None:
    inner = HashEmbedder(32)
    cached = CachedEmbedder(inner, capacity=2)
    cached.embed(["a b", "c d"])
    assert inner.calls == 1
    cached.embed(["a b"])  # hit: "a b" becomes most recent
    assert inner.calls == 1
    cached.embed(["e f"])  # evicts "c d", the least recently used
    assert inner.calls == 2
    cached.embed(["a b"])
    assert inner.calls == 2
    cached.embed(["c d"])
    assert inner.calls == 3
    assert cached.misses == 4 and cached.hits == 2


def test_build_embedder_wraps_in_cache_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    from engram.embed import EMBEDDERS

    monkeypatch.setitem(EMBEDDERS, "hash-test", lambda cfg: HashEmbedder(cfg.dimensions or 16))
    wrapped = build_embedder(EmbedderConfig(provider="hash-test", dimensions=16))
    plain = build_embedder(
        EmbedderConfig(provider="hash-test", dimensions=16, cache_size=0, coalesce=False)
    )
    coalesced = build_embedder(EmbedderConfig(provider="hash-test", dimensions=16, cache_size=0))
    assert isinstance(wrapped, CachedEmbedder) and wrapped.capacity == 8192
    assert isinstance(wrapped.inner, CoalescingEmbedder)
    assert isinstance(plain, HashEmbedder)
    assert isinstance(coalesced, CoalescingEmbedder) and isinstance(coalesced.inner, HashEmbedder)


class _Broken(Embedder):
    name, dim = "broken", 4

    def __init__(self, result: Callable[[int], np.ndarray]):
        self.result = result

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.result(len(texts))


def test_embedder_output_is_checked() -> None:
    with pytest.raises(EmbeddingError, match=r"returned shape \(2, 3\), expected \(2, 4\)"):
        _Broken(lambda n: np.ones((n, 3))).embed(["a", "b"])
    with pytest.raises(EmbeddingError, match="NaN or infinite"):
        _Broken(lambda n: np.full((n, 4), np.nan)).embed(["a"])
    zero = _Broken(lambda n: np.zeros((n, 4))).embed(["a"])
    assert np.all(zero == 0)


# -- OpenAI-compatible endpoint --------------------------------------------------------------------


@dataclass
class FakeEndpoint:
    """A real HTTP server on 127.0.0.1 speaking the OpenAI embeddings protocol."""

    model: Embedder
    mode: str = "ok"
    fail_after: int | None = None  # answer 500 once this many requests were served
    requests: list[dict] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                endpoint.requests.append(payload)
                endpoint.auth.append(self.headers.get("Authorization"))
                if self.path != "/v1/embeddings":
                    self._send(404, b'{"error": "not found"}')
                    return
                mode = endpoint.mode
                if endpoint.fail_after is not None and len(endpoint.requests) > endpoint.fail_after:
                    mode = "500"
                if mode == "500":
                    self._send(500, b'{"error": "model crashed"}')
                    return
                if mode == "malformed":
                    self._send(200, b'{"data": [{"index": 0, "embedding": [0.1, 0.2')
                    return
                if mode == "no-data":
                    self._send(200, b'{"object": "list", "results": []}')
                    return
                if mode == "html":
                    self._send(200, b"<html>gateway</html>", "text/html")
                    return
                texts = payload["input"]
                vectors = endpoint.model.embed(texts)
                if mode == "short":
                    vectors = vectors[:-1]
                rows = [
                    {"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)
                ]
                rows.reverse()  # servers may answer out of order: `index` is what counts
                body = {"object": "list", "data": rows, "model": payload["model"]}
                self._send(200, json.dumps(body).encode())

        return Handler


@pytest.fixture
def endpoint(embedder: Embedder) -> Iterator[FakeEndpoint]:
    inner = embedder.inner if isinstance(embedder, CachedEmbedder) else embedder
    fake = FakeEndpoint(model=inner)
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_openai_embedder_against_a_real_server(endpoint: FakeEndpoint, embedder) -> None:
    remote = OpenAIEmbedder("minilm-remote", endpoint.url + "/", api_key="sk-test", batch_size=2)
    try:
        assert remote.dim == 384  # probed with one request
        assert remote.name == "minilm-remote"
        texts = ["one fish", "two fish", "red fish", "blue fish", "a fifth text"]
        vectors = remote.embed(texts)
        assert vectors.shape == (5, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        local = embedder.embed(texts)
        assert np.allclose(vectors, local, atol=1e-4)  # order restored from `index`
    finally:
        remote.close()
    batches = [r["input"] for r in endpoint.requests]
    assert batches == [["dimension probe"], texts[0:2], texts[2:4], texts[4:5]]
    assert all(r["model"] == "minilm-remote" for r in endpoint.requests)
    assert set(endpoint.auth) == {"Bearer sk-test"}


def test_openai_embedder_from_config_inside_memory(endpoint: FakeEndpoint, tmp_path: Path) -> None:
    cfg = EmbedderConfig(
        provider="openai", model="minilm-remote", base_url=endpoint.url, dimensions=384
    )
    remote = build_embedder(cfg)
    assert isinstance(remote, CachedEmbedder)
    assert endpoint.requests == []  # dimensions given: no probe
    assert endpoint.auth == []
    with Memory(home=tmp_path, embedder=remote) as mem:
        mem.add(["My bike is a red road bike.", "I bake sourdough on Sundays."], user_id="alice")
        hits = mem.search("bread baking", user_id="alice", pipeline="dense")
        assert hits[0].memory == "I bake sourdough on Sundays."
    assert endpoint.auth and set(endpoint.auth) == {None}  # no key configured, no header


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        pytest.param("500", "embedding endpoint failed: .*500", id="http-500"),
        pytest.param(
            "malformed", "embedding endpoint returned an unexpected body", id="malformed-json"
        ),
        pytest.param("no-data", "unexpected body: 'data'", id="missing-data"),
        pytest.param("html", "unexpected body", id="not-json"),
        pytest.param("short", r"returned shape \(1, 384\), expected \(2, 384\)", id="too-few-rows"),
    ],
)
def test_openai_endpoint_failures_are_embedding_errors(
    endpoint: FakeEndpoint, mode: str, match: str
) -> None:
    remote = OpenAIEmbedder("minilm-remote", endpoint.url, dimensions=384)
    endpoint.mode = mode
    try:
        with pytest.raises(EmbeddingError, match=match):
            remote.embed(["first", "second"])
    finally:
        remote.close()


def test_openai_probe_failure_and_wrong_path(endpoint: FakeEndpoint) -> None:
    endpoint.mode = "500"
    with pytest.raises(EmbeddingError, match="500"):
        OpenAIEmbedder("minilm-remote", endpoint.url)  # the dimension probe fails clearly
    endpoint.mode = "ok"
    with pytest.raises(EmbeddingError, match="404"):
        OpenAIEmbedder("m", endpoint.url.removesuffix("/v1"), dimensions=384).embed(["x"])


def test_openai_dimension_mismatch_is_caught(endpoint: FakeEndpoint) -> None:
    remote = OpenAIEmbedder("minilm-remote", endpoint.url, dimensions=768)
    try:
        with pytest.raises(EmbeddingError, match=r"expected \(1, 768\)"):
            remote.embed(["x"])
    finally:
        remote.close()


def test_openai_unreachable_endpoint() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = OpenAIEmbedder("m", f"http://127.0.0.1:{port}/v1", dimensions=8, timeout_s=2)
    try:
        with pytest.raises(EmbeddingError, match="embedding endpoint failed"):
            remote.embed(["x"])
    finally:
        remote.close()


def test_embedding_failure_during_add_writes_nothing(
    endpoint: FakeEndpoint, tmp_path: Path
) -> None:
    remote = OpenAIEmbedder("minilm-remote", endpoint.url, dimensions=384)
    with Memory(home=tmp_path, embedder=remote) as mem:
        mem.add("first memory", user_id="alice")
        endpoint.mode = "500"
        with pytest.raises(EmbeddingError):
            mem.add(["second", "third"], user_id="alice")
        endpoint.mode = "ok"
        assert [i.memory for i in mem.get_all(user_id="alice").items] == ["first memory"]


def test_a_large_add_that_fails_part_way_is_completed_by_its_retry(
    endpoint: FakeEndpoint, tmp_path: Path
) -> None:
    """A large add commits chunk by chunk (other owners interleave): when the embedding
    endpoint fails part-way, the committed chunks stay, and a retry with the same
    idempotency key stores the rest without duplicating the first part."""
    remote = OpenAIEmbedder("minilm-remote", endpoint.url, dimensions=384, batch_size=100)
    turns = [f"turn {i} of a long imported chat" for i in range(1200)]
    with Memory(home=tmp_path, embedder=remote) as mem:
        endpoint.fail_after = 6  # the 7th embedding request (of 12) fails
        with pytest.raises(EmbeddingError):
            mem.add(turns, user_id="alice", idempotency_key="import-1")
        partial = len(list(mem.iter_all(user_id="alice")))
        assert 0 < partial < len(turns)
        endpoint.fail_after = None
        mem.add(turns, user_id="alice", idempotency_key="import-1")
        stored = [item.memory for item in mem.iter_all(user_id="alice")]
        assert sorted(stored) == sorted(turns)


def test_the_numpy_encoder_equals_the_torch_path() -> None:
    """The CLI's query encoder (no torch import) and sentence-transformers agree."""
    from engram.embed.local import SentenceTransformerEmbedder
    from engram.embed.numpy_bert import NumpyBertEmbedder

    texts = [
        "where does alice live?",
        "I adopted a dog last week! A three-year-old greyhound called Biscuit.",
        "a",
        "Émile's café — naïve 😀 ¿qué?",
        "word " * 400,  # past max_seq_length: truncated the same way
        "Tomas hurt his knee running the Lisbon half marathon in October 2023.",
    ]
    fast = NumpyBertEmbedder().embed(texts)
    exact = SentenceTransformerEmbedder(precision="fp32").embed(texts)
    cosines = (fast * exact).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines


def test_the_bf16_encoder_keeps_the_fp32_vectors_and_their_order() -> None:
    """bf16 weights with fp32 pooling (the default on CPUs with native bf16) stay within
    cosine 0.9998 of fp32, text by text, whatever order and lengths the batch has."""
    from engram.embed.local import SentenceTransformerEmbedder

    texts = [
        "a",
        "I adopted a dog last week! A three-year-old greyhound called Biscuit.",
        "word " * 400,  # past max_seq_length: truncated like sentence-transformers does
        "where does alice live?",
        "Émile's café — naïve 😀 ¿qué?",
        "ok",
        "Tomas hurt his knee running the Lisbon half marathon in October 2023.",
    ]
    fast = SentenceTransformerEmbedder(precision="bf16", batch_size=3)
    assert fast._bf16 is not None  # MiniLM is transformer + mean pooling: the bf16 path
    exact = SentenceTransformerEmbedder(precision="fp32").embed(texts)
    cosines = (fast.embed(texts) * exact).sum(axis=1)
    assert cosines.min() >= 0.9998, cosines
    assert SentenceTransformerEmbedder(precision="fp32")._bf16 is None


def test_the_numpy_encoder_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    from engram.embed.numpy_bert import NumpyBertEmbedder
    from engram.errors import ConfigError

    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ConfigError, match="sentence-transformers"):
        NumpyBertEmbedder(str(tmp_path))
    with pytest.raises(ConfigError, match="not a directory"):
        NumpyBertEmbedder(str(tmp_path / "missing"))


def test_small_batches_never_wait_behind_a_bulk_batch() -> None:
    """`local` routes by batch size and coalesces each path apart: a query embeds while a
    bulk batch is still running on the other path."""
    from engram.embed.coalesce import CoalescingEmbedder
    from engram.embed.routed import BatchRoutedEmbedder

    started, release = threading.Event(), threading.Event()

    class SlowBulk(HashEmbedder):
        def _embed(self, texts: list[str]) -> np.ndarray:
            started.set()
            release.wait(30)
            return super()._embed(texts)

    small, bulk = HashEmbedder(dim=8, name="h"), SlowBulk(dim=8, name="h")
    routed = BatchRoutedEmbedder(CoalescingEmbedder(small), lambda: CoalescingEmbedder(bulk), 4)
    routed.large()  # built (and its agreement checked) before the race
    started.clear()
    worker = threading.Thread(target=routed.embed, args=([f"bulk {i}" for i in range(10)],))
    worker.start()
    assert started.wait(10)
    query = routed.for_owner("user:bob").embed(["a query"])  # returns while bulk is held
    assert query.shape == (1, 8) and small.calls >= 1
    release.set()
    worker.join(10)
    assert bulk.calls >= 1
