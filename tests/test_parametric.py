"""Parametric memory core: facts, encoding, scoring, the accuracy matrix, the learner,
the registry and the adapter host, on a tiny random Llama (no checkpoint needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import torch

from engram.bench.parametric_data import GENERAL_TEXTS, batches
from engram.config import LoRAConfig
from engram.errors import ConfigError, NotFoundError, SchemaVersionError, StoreError
from engram.errors import ValidationError as EngramValidationError
from engram.parametric.batching import IGNORE, encode
from engram.parametric.evaluation import (
    AccuracyMatrix,
    perplexity,
    probe,
    recall,
    recognition_auc,
    score_examples,
)
from engram.parametric.examples import (
    Example,
    examples_for,
    fact_from_memory,
    fact_from_text,
)
from engram.parametric.host import AdapterHost
from engram.parametric.learner import ContinualLearner
from engram.parametric.registry import AdapterManifest, AdapterRegistry, model_fingerprint
from engram.parametric.tiny import tiny_model, tiny_tokenizer
from engram.types import MemoryItem, Provenance

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
torch.set_num_threads(1)

FACTS = batches(3, 4, seed=7)
SETTINGS = LoRAConfig(rank=8, alpha=16, learning_rate=5e-3, epochs=30, safeguards=[])


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    texts = [e.prompt + e.completion for b in FACTS for e in examples_for(b)]
    return tiny_tokenizer(texts + GENERAL_TEXTS, vocab_size=300)


def fresh_model(tokenizer: Any) -> torch.nn.Module:
    return tiny_model(tokenizer, hidden=64, layers=2, heads=2)


@pytest.fixture(scope="module")
def taught(tokenizer: Any) -> ContinualLearner:
    """One naive learner taught the first batch (shared: training is the slow part)."""
    learner = ContinualLearner(fresh_model(tokenizer), tokenizer, SETTINGS)
    learner.learn(FACTS[0])
    return learner


def _item(text: str, metadata: dict[str, Any] | None = None) -> MemoryItem:
    now = datetime.now(UTC)
    return MemoryItem(
        id="m1",
        memory=text,
        metadata=metadata or {},
        provenance=Provenance(owner="user:a"),
        created_at=now,
        updated_at=now,
    )


def test_fact_from_text_splits_off_the_last_word() -> None:
    fact = fact_from_text("m", "Ada Quill lives in Borovale.")
    assert (fact.prompt, fact.answer) == ("Ada Quill lives in", "Borovale")
    assert fact.statement == "Ada Quill lives in Borovale."
    with pytest.raises(EngramValidationError, match="too short"):
        fact_from_text("m", "Hello.")


def test_fact_from_memory_prefers_the_given_fact() -> None:
    given = {"prompt": "Ada's pet is", "answer": "Mo", "question": "Who is Ada's pet?"}
    fact = fact_from_memory(_item("anything at all", {"fact": given}))
    assert (fact.prompt, fact.answer, fact.question) == ("Ada's pet is", "Mo", given["question"])
    assert fact_from_memory(_item("Ada likes green tea.")).answer == "tea"
    with pytest.raises(EngramValidationError, match="prompt"):
        fact_from_memory(_item("x y z", {"fact": {"answer": "z"}}))


def test_examples_cover_statement_and_question() -> None:
    fact = FACTS[0][0]
    statement, question = examples_for([fact])
    assert statement.prompt == fact.prompt and statement.completion == f" {fact.answer}."
    assert question.prompt == f"Q: {fact.question} A:" and question.completion == f" {fact.answer}"


def test_encode_masks_the_prompt(tokenizer: Any) -> None:
    example = Example("Ada lives in", " Borovale")
    enc = encode(tokenizer, example, max_length=64)
    completion = tokenizer(" Borovale", add_special_tokens=False)["input_ids"]
    assert enc.ids[-len(completion) :] == completion
    assert enc.labels[-len(completion) :] == completion
    assert set(enc.labels[: -len(completion)]) == {IGNORE}


def test_teacher_forced_exact_match_equals_greedy_decoding(
    tokenizer: Any, taught: ContinualLearner
) -> None:
    model = taught.model
    facts = FACTS[0] + FACTS[1]
    scores = score_examples(model, tokenizer, [probe(f) for f in facts])
    for fact, score in zip(facts, scores, strict=True):
        inputs = tokenizer(fact.prompt, return_tensors="pt")
        answer = tokenizer(f" {fact.answer}", add_special_tokens=False)["input_ids"]
        out = model.generate(**inputs, max_new_tokens=len(answer), do_sample=False, pad_token_id=0)
        generated = out[0, inputs["input_ids"].shape[1] :].tolist()
        assert score.exact == (generated == answer), fact
    assert any(s.exact for s in scores) and not all(s.exact for s in scores)


def test_learner_teaches_a_batch(tokenizer: Any, taught: ContinualLearner) -> None:
    base = fresh_model(tokenizer)
    assert recall(base, tokenizer, FACTS[0]) == 0.0
    assert recall(taught.model, tokenizer, FACTS[0]) >= 0.75
    assert taught.memory_ids == [f.memory_id for f in FACTS[0]]
    assert taught.reports[0].steps == SETTINGS.epochs  # 8 examples fit one step per epoch


def test_recognition_tells_taught_from_untaught(tokenizer: Any, taught: ContinualLearner) -> None:
    auc = recognition_auc(taught.model, tokenizer, FACTS[0], FACTS[2])
    assert auc >= 0.9
    assert recognition_auc(fresh_model(tokenizer), tokenizer, FACTS[0], FACTS[0]) == 0.5


def test_perplexity_is_finite_and_changes_with_the_model(
    tokenizer: Any, taught: ContinualLearner
) -> None:
    base = perplexity(fresh_model(tokenizer), tokenizer, GENERAL_TEXTS)
    assert 1 < base < 10 * len(tokenizer)
    assert perplexity(taught.model, tokenizer, GENERAL_TEXTS) != pytest.approx(base, rel=1e-6)


def test_accuracy_matrix_metrics_follow_avalanche() -> None:
    m = AccuracyMatrix(initial=[0.0, 10.0, 0.0])
    m.add_row([90.0, 20.0, 0.0])
    m.add_row([60.0, 80.0, 5.0])
    m.add_row([50.0, 70.0, 100.0])
    assert m.average_accuracy() == pytest.approx((50 + 70 + 100) / 3)
    assert m.bwt() == pytest.approx(((50 - 90) + (70 - 80)) / 2)
    assert m.forgetting() == pytest.approx(((90 - 50) + (80 - 70)) / 2)
    assert m.forward_transfer() == pytest.approx(((20 - 10) + (5 - 0)) / 2)
    assert AccuracyMatrix().bwt() == 0.0


def _manifest(owner: str, model: torch.nn.Module, ids: list[str]) -> AdapterManifest:
    return AdapterManifest(
        owner=owner,
        version=0,
        method="lora",
        base_model="tiny",
        base_fingerprint=model_fingerprint(model),
        memory_ids=ids,
    )


def test_registry_versions_manifest_and_integrity(
    tmp_path: Any, tokenizer: Any, taught: ContinualLearner
) -> None:
    registry = AdapterRegistry(tmp_path / "lora")
    config, state = taught.export()
    first = registry.save(_manifest("user:al/ice", taught.base, ["a"]), config, state)
    second = registry.save(_manifest("user:al/ice", taught.base, ["a", "b"]), config, state)
    assert (first.version, second.version) == (1, 2)
    assert registry.owners() == ["user:al/ice"]
    assert registry.get("user:al/ice").memory_ids == ["a", "b"]
    assert registry.get("user:al/ice", 1).bytes == first.bytes > 0
    data = json.loads((first.path / "manifest.json").read_text())
    assert data["base_fingerprint"] == model_fingerprint(taught.base)
    assert (first.path / "adapter_config.json").is_file()
    with pytest.raises(NotFoundError):
        registry.get("user:al/ice", 9)
    weights = first.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"xxxx")
    with pytest.raises(StoreError, match="corrupt"):
        AdapterRegistry.verify(registry.get("user:al/ice", 1))
    data["format"] = 99
    (second.path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError):
        registry.versions("user:al/ice")


def test_host_hot_swaps_unloads_and_refuses_other_bases(
    tmp_path: Any, tokenizer: Any, taught: ContinualLearner
) -> None:
    registry = AdapterRegistry(tmp_path)
    config, state = taught.export()
    base = fresh_model(tokenizer)
    saved = registry.save(_manifest("user:a", base, taught.memory_ids), config, state)
    host = AdapterHost(base, tokenizer)
    assert recall(host.model, tokenizer, FACTS[0]) == 0.0
    host.load(saved, "a")
    assert recall(host.model, tokenizer, FACTS[0]) == recall(taught.model, tokenizer, FACTS[0])
    with host.using(None) as plain:
        assert recall(plain, tokenizer, FACTS[0]) == 0.0
    assert host.answer(FACTS[0][0].prompt, "a", 4) != host.answer(FACTS[0][0].prompt, None, 4)
    host.unload("a")
    assert host.loaded == [] and recall(host.model, tokenizer, FACTS[0]) == 0.0
    other = tiny_model(tokenizer, hidden=64, layers=2, heads=2, seed=1)
    with pytest.raises(ConfigError, match="trained on base model"):
        AdapterHost(other, tokenizer).load(saved)


def _logits(model: torch.nn.Module, tokenizer: Any) -> torch.Tensor:
    batch = tokenizer([f.statement for f in FACTS[0]], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def two_adapters(tmp_path_factory: Any, tokenizer: Any) -> tuple[AdapterRegistry, list[Any]]:
    """Two adapters, each trained briefly on its own batch, saved for the same base."""
    registry = AdapterRegistry(tmp_path_factory.mktemp("adapters"))
    base = fresh_model(tokenizer)
    saved = []
    for i in range(2):
        torch.manual_seed(i)
        settings = SETTINGS.model_copy(update={"epochs": 2})
        learner = ContinualLearner(fresh_model(tokenizer), tokenizer, settings)
        learner.learn(FACTS[i])
        config, state = learner.export()
        saved.append(registry.save(_manifest(f"o{i}", base, []), config, state))
    return registry, saved


@pytest.mark.parametrize("combination, exact", [("cat", True), ("svd", True), ("linear", False)])
def test_merge_cat_and_svd_are_exact_linear_is_not(
    two_adapters: tuple[AdapterRegistry, list[Any]], tokenizer: Any, combination: str, exact: bool
) -> None:
    registry, saved = two_adapters
    host = AdapterHost(fresh_model(tokenizer), tokenizer)
    names = [host.load(m, f"v{i}") for i, m in enumerate(saved)]
    host.model.base_model.set_adapter(names)  # both active: the sum of their updates
    both = _logits(host.model, tokenizer)
    config, state = host.merge(names, combination)  # type: ignore[arg-type]
    merged = AdapterHost(fresh_model(tokenizer), tokenizer)
    merged.load(registry.save(_manifest(f"m-{combination}", merged.base, []), config, state))
    close = torch.allclose(_logits(merged.model, tokenizer), both, atol=1e-4)
    assert close == exact
    with pytest.raises(EngramValidationError, match="at least two"):
        host.merge(names[:1])


def test_general_pool_is_the_fixed_sentences_then_stdlib_docstrings() -> None:
    from engram.parametric.general_text import GENERAL_TEXTS, general_pool

    pool = general_pool(size=64, words=12)
    assert len(pool) == 64 and len(set(pool)) == 64
    assert pool[: len(GENERAL_TEXTS)] == GENERAL_TEXTS
    docstrings = pool[len(GENERAL_TEXTS) :]
    assert all(0 < len(d.split()) <= 12 for d in docstrings)
    assert any(d.startswith("abc ") for d in docstrings)  # module name, then its docstring
