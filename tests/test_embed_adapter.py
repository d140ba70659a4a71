"""The packaged embedder adapter (conv-v2, the default): both encoders load it, stores
keep the vectors they were built with, and `engram models tune-embedder` makes adapters
that load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engram import Memory
from engram.bench.devset import generate
from engram.cli import app
from engram.config import EmbedderConfig
from engram.embed import build_embedder
from engram.embed.adapter import DEFAULT_ADAPTER, load_adapter, save_adapter
from engram.embed.numpy_bert import NumpyBertEmbedder
from engram.errors import ConfigError, EmbedderMismatchError

runner = CliRunner()
TEXTS = [
    "where does alice live?",
    "Maya: omg i finally got inked lol, a tiny fox on my wrist",
    "ok",
    "Tomas: I hurt my knee running the Lisbon half marathon in October.",
]


def test_both_encoders_load_the_default_adapter_and_agree() -> None:
    from engram.embed.local import SentenceTransformerEmbedder

    fast = NumpyBertEmbedder()
    exact = SentenceTransformerEmbedder(precision="fp32")
    plain = NumpyBertEmbedder(adapter="none")
    assert fast.name == exact.name == f"all-MiniLM-L6-v2+{DEFAULT_ADAPTER}"
    assert plain.name == "all-MiniLM-L6-v2"
    a, b, p = fast.embed(TEXTS), exact.embed(TEXTS), plain.embed(TEXTS)
    assert (a * b).sum(axis=1).min() >= 0.9999  # the same adapted weights in both
    assert (a * p).sum(axis=1).max() < 0.99  # ... and another space than the plain model's


def test_the_adapter_finds_paraphrased_evidence_the_plain_model_misses() -> None:
    """On generated conversations it never saw (seed 7), the
    adapted encoder ranks a question's evidence turn higher than the plain one does (it
    was trained on seeds 1-6)."""
    sample = generate(7, 1)[0]
    turns = {
        t["dia_id"]: f"{t['speaker']}: {t['text']}"
        for key, value in sample["conversation"].items()
        if key.startswith("session_") and isinstance(value, list)
        for t in value
    }
    ids = list(turns)
    qa = [q for q in sample["qa"] if q["evidence"]][:60]

    def recall_at_10(encoder: NumpyBertEmbedder) -> float:
        docs = encoder.embed([turns[i] for i in ids])
        found = []
        for q in qa:
            top = np.argsort(-(docs @ encoder.embed_one(q["question"])))[:10]
            found.append(bool({ids[i] for i in top} & set(q["evidence"])))
        return float(np.mean(found))

    tuned, plain = (
        recall_at_10(NumpyBertEmbedder()),
        recall_at_10(NumpyBertEmbedder(adapter="none")),
    )
    assert tuned > plain + 0.1, (tuned, plain)


def test_a_store_keeps_the_embedder_it_was_built_with(tmp_path: Path) -> None:
    """`auto` follows what the store holds: a store built without the adapter (before it
    existed, or by choice) reopens on the plain model; asking for the adapter by name
    there is refused, as any other embedder would be."""
    plain_home, new_home = tmp_path / "plain", tmp_path / "new"
    with Memory(home=plain_home, embedder={"adapter": "none"}) as m:
        m.add("Biscuit is my greyhound", user_id="u")
    with Memory(home=plain_home) as m:
        assert m.embedder.name == "all-MiniLM-L6-v2"
        assert m.search("my dog", user_id="u")[0].memory == "Biscuit is my greyhound"
    with pytest.raises(EmbedderMismatchError, match="conv-v1"):
        Memory(home=plain_home, embedder={"adapter": "conv-v1"})
    with Memory(home=new_home) as m:
        m.add("Biscuit is my greyhound", user_id="u")
        assert m.store.recorded_embedder() == f"all-MiniLM-L6-v2+{DEFAULT_ADAPTER}"
    # the CLI builds its embedder lazily: it follows the store the same way
    result = runner.invoke(app, ["--home", str(plain_home), "--json", "search", "dog", "-u", "u"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["memory"] == "Biscuit is my greyhound"


def test_bad_adapters_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a packaged adapter"):
        NumpyBertEmbedder(adapter="conv-v9")
    adapter = load_adapter(DEFAULT_ADAPTER)
    name = next(iter(adapter.factors))
    a, b = adapter.factors[name]
    wrong = tmp_path / "wrong.safetensors"
    save_adapter(wrong, "wrong", "all-MiniLM-L6-v2", {name: (a[:, :7], b)}, {})
    with pytest.raises(ConfigError, match="does not fit"):
        NumpyBertEmbedder(adapter=str(wrong))
    foreign = tmp_path / "foreign.safetensors"
    save_adapter(foreign, "foreign", "other", {"decoder.w.weight": (a, b)}, {})
    with pytest.raises(ConfigError, match="lacks"):
        NumpyBertEmbedder(adapter=str(foreign))
    with pytest.raises(ConfigError, match="'openai' has none"):
        build_embedder(
            EmbedderConfig(provider="openai", base_url="http://x", dimensions=8, adapter="conv-v1")
        )


def test_tune_embedder_writes_an_adapter_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "mine.safetensors"
    args = ["--json", "models", "tune-embedder", "--out", str(out), "--seeds", "5"]
    small = ["--conversations", "1", "--steps", "2", "--rank", "2", "--lr", "0.05"]
    result = runner.invoke(app, [*args, *small])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["steps"] == 2 and report["weights"] == 36 and report["pairs"] >= 32
    tuned = NumpyBertEmbedder(adapter=str(out))
    assert tuned.name == "all-MiniLM-L6-v2+mine"
    assert load_adapter(str(out)).info["settings"]["seeds"] == [5]
    cosines = (tuned.embed(TEXTS) * NumpyBertEmbedder(adapter="none").embed(TEXTS)).sum(axis=1)
    assert cosines.min() < 1 - 1e-6  # two steps moved the weights, a little
    bad = runner.invoke(app, [*args, "--seeds", "x"])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.output


def test_auto_keeps_the_packaged_adapter_a_store_was_built_with() -> None:
    from engram.embed.adapter import resolve

    base = "all-MiniLM-L6-v2"
    assert resolve("auto", None, None, base) == DEFAULT_ADAPTER  # a new store
    assert resolve("auto", None, base, base) is None  # built plain
    assert resolve("auto", None, f"{base}+conv-v1", base) == "conv-v1"  # even if not default
    assert resolve("auto", None, f"{base}+mine", base) == DEFAULT_ADAPTER  # mismatch, refused
    assert resolve("auto", "/models/other", None, base) is None  # adapters fit MiniLM only
    assert resolve("none", None, None, base) is None
    assert resolve("/a/file.safetensors", None, base, base) == "/a/file.safetensors"
