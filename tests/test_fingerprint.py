"""One model fingerprint for both tiers: a KV block and an adapter built on the same model
carry the same one, and adapters saved with the legacy fingerprint still load."""

from __future__ import annotations

from typing import Any

import pytest

from engram.activation import build_kv
from engram.bench.parametric_data import GENERAL_TEXTS, batches
from engram.config import LoRAConfig
from engram.errors import ConfigError
from engram.lm.fingerprint import model_fingerprint
from engram.parametric.examples import examples_for
from engram.parametric.host import AdapterHost
from engram.parametric.learner import ContinualLearner
from engram.parametric.registry import (
    AdapterManifest,
    AdapterRegistry,
    legacy_fingerprint,
)
from engram.parametric.tiny import tiny_model, tiny_tokenizer

FACTS = batches(1, 2, seed=3)[0]
SETTINGS = LoRAConfig(rank=4, alpha=8, learning_rate=5e-3, epochs=1, safeguards=[])


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    texts = [e.prompt + e.completion for e in examples_for(FACTS)]
    return tiny_tokenizer(texts + GENERAL_TEXTS, vocab_size=300)


def _model(tokenizer: Any, seed: int = 0) -> Any:
    return tiny_model(tokenizer, hidden=32, layers=1, heads=2, seed=seed)


def _adapter(tmp_path: Any, learner: ContinualLearner, fingerprint: str) -> AdapterManifest:
    config, state = learner.export()
    manifest = AdapterManifest("user:a", 0, learner.method, "tiny", fingerprint, [])
    return AdapterRegistry(tmp_path / "lora").save(manifest, config, state)


def test_a_kv_block_and_an_adapter_on_one_model_share_its_fingerprint(
    tmp_path: Any, tokenizer: Any
) -> None:
    model = _model(tokenizer)
    block = build_kv(model, "Maya moved to Lisbon.", tokenizer)
    learner = ContinualLearner(model, tokenizer, SETTINGS)
    learner.learn(FACTS)  # LoRA layers now sit inside the model
    manifest = _adapter(tmp_path, learner, model_fingerprint(learner.model))
    assert manifest.base_fingerprint == block.model_fingerprint == model_fingerprint(model)
    # a block built on the model carrying the adapter still names the base model
    on_adapter = build_kv(learner.model, "Maya.", tokenizer)
    assert on_adapter.model_fingerprint == manifest.base_fingerprint
    host = AdapterHost(_model(tokenizer), tokenizer)
    assert host.fingerprint == block.model_fingerprint
    host.load(manifest)
    other = AdapterHost(_model(tokenizer, seed=1), tokenizer)
    with pytest.raises(ConfigError, match="trained on base model"):
        other.load(manifest)


def test_an_adapter_saved_with_the_legacy_fingerprint_still_loads(
    tmp_path: Any, tokenizer: Any
) -> None:
    learner = ContinualLearner(_model(tokenizer), tokenizer, SETTINGS)
    learner.learn(FACTS)
    legacy = legacy_fingerprint(_model(tokenizer))
    assert len(legacy) == 32 and legacy != model_fingerprint(_model(tokenizer))
    manifest = _adapter(tmp_path, learner, legacy)
    AdapterHost(_model(tokenizer), tokenizer).load(manifest)
    with pytest.raises(ConfigError, match="trained on base model"):
        AdapterHost(_model(tokenizer, seed=1), tokenizer).load(manifest)
