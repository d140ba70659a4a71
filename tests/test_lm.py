"""The project LM: the packaged checkpoint loads offline with plain transformers, has a
realistic KV layout (GQA), predicts held-out text far better than chance and copies
facts from its context; rebuilding is deterministic."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
from typer.testing import CliRunner

from engram.cli import app
from engram.errors import ValidationError
from engram.lm import build_model, copy_probe, default_model_path, load_model, probe_items
from engram.lm.corpus import dialogue_document, fact_document, kv_document
from engram.lm.probe import greedy_answers

PACKAGED = default_model_path()


@pytest.fixture(scope="module")
def packaged() -> tuple[torch.nn.Module, object]:
    return load_model()


def test_packaged_checkpoint_loads_with_plain_transformers() -> None:
    tokenizer = AutoTokenizer.from_pretrained(PACKAGED, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(PACKAGED, local_files_only=True)
    assert isinstance(model, LlamaForCausalLM)
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention
    assert cfg.head_dim == 32 and cfg.max_position_embeddings >= 4096
    assert 3e6 <= sum(p.numel() for p in model.parameters()) <= 6e6
    assert tokenizer.bos_token and tokenizer.eos_token and tokenizer.pad_token
    assert len(tokenizer) == cfg.vocab_size
    size = sum(f.stat().st_size for f in PACKAGED.iterdir() if f.is_file())
    assert size <= 25_000_000


def test_tokenizer_round_trips_text(packaged: tuple[torch.nn.Module, object]) -> None:
    _, tokenizer = packaged
    for text in [
        "Q: Where does Ilsa Varn work? A: at the Korvo mill.",
        "def f(x):\n    return {'a': [1, 2]}  # ünïcödé ✓ 日本",
        "  leading spaces and\ttabs\n\n",
    ]:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_held_out_perplexity_is_far_below_uniform(
    packaged: tuple[torch.nn.Module, object],
) -> None:
    model, tokenizer = packaged
    rng = random.Random("unseen-documents")  # a seed the training corpus never used
    docs = [make(rng) for make in (fact_document, kv_document, dialogue_document) for _ in range(2)]
    losses = []
    with torch.no_grad():
        for doc in docs:
            ids = tokenizer(doc, return_tensors="pt")["input_ids"][:, :512]
            losses.append(model(input_ids=ids, labels=ids).loss.item())
    ppl = math.exp(sum(losses) / len(losses))
    assert ppl < len(tokenizer) / 50, ppl
    manifest = json.loads((PACKAGED / "manifest.json").read_text())
    assert manifest["val_perplexity"] < len(tokenizer) / 50
    assert "LoCoMo" in manifest["corpus"]["note"]


def _answer_logprob(model: torch.nn.Module, tokenizer: object, prompt: str, answer: str) -> float:
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(f"{prompt} {answer}")["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0].log_softmax(-1)
    return float(sum(logits[i - 1, full[i]] for i in range(len(prompt_ids), len(full))))


def test_the_model_reads_its_context(packaged: tuple[torch.nn.Module, object]) -> None:
    """The shipped checkpoint does not copy answers greedily yet (copy probe ~2%, see
    docs/model.md), but its answer likelihood already depends on the context: the right
    value is likelier after the context that states it than after one stating another."""
    model, tokenizer = packaged
    items = probe_items(40, seed=7)
    wins = 0
    for item, other in zip(items, items[1:] + items[:1], strict=True):
        stated = _answer_logprob(model, tokenizer, item.prompt, item.answer)
        elsewhere = f"{other.context}\n{item.question}"
        wins += stated > _answer_logprob(model, tokenizer, elsewhere, item.answer)
    assert wins / len(items) > 0.5, wins
    assert 0.0 <= copy_probe(model, tokenizer, n=10, seed=7) <= 1.0


def test_batched_greedy_answers_equal_one_at_a_time(
    packaged: tuple[torch.nn.Module, object],
) -> None:
    model, tokenizer = packaged
    prompts = [
        "Session 1 (May 3, 2021)\nIlsa:",
        "Q: What is the job of Tomas Brel? A:",
        "The code of Dara Quell is 4817.\nThe badge of Ilsa Varn is red.\nQ: What is the",
        "def",
    ]
    batched = greedy_answers(model, tokenizer, prompts, max_new_tokens=10)
    assert batched == [greedy_answers(model, tokenizer, [p], max_new_tokens=10)[0] for p in prompts]
    assert len(set(batched)) == len(prompts)  # left padding did not flatten the answers


def test_probe_items_are_deterministic_and_answerable() -> None:
    first, second = probe_items(5, facts=6, seed=3), probe_items(5, facts=6, seed=3)
    assert first == second and first != probe_items(5, facts=6, seed=4)
    for item in first:
        assert f" is {item.answer}." in item.context
        assert item.prompt.endswith("A:") and item.context.count("\n") == 5


def test_quick_build_is_deterministic_and_loadable(tmp_path: Path) -> None:
    one = build_model(tmp_path / "one", quick=True, steps=3, seed=1)
    two = build_model(tmp_path / "two", quick=True, steps=3, seed=1)
    w1 = load_file(tmp_path / "one" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "model.safetensors")
    assert w1.keys() == w2.keys()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert one["corpus"]["sha256"] == two["corpus"]["sha256"]
    assert one["val_loss"] == two["val_loss"] and one["recipe"]["steps"] == 3
    assert (tmp_path / "one" / "tokenizer.json").read_bytes() == (
        tmp_path / "two" / "tokenizer.json"
    ).read_bytes()
    model, tokenizer = load_model(tmp_path / "one")
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    out = model.generate(**tokenizer("The code", return_tensors="pt"), max_new_tokens=3)
    assert out.shape[1] > 2
    other = build_model(tmp_path / "three", quick=True, steps=3, seed=2)
    assert other["corpus"]["sha256"] != one["corpus"]["sha256"]


def test_bad_paths_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="not a directory"):
        load_model(tmp_path / "file")
    with pytest.raises(ValidationError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValidationError, match="no weights"):
        load_model(tmp_path)


def test_build_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not replacing"):
        build_model(tmp_path, quick=True, steps=1)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    with pytest.raises(ValidationError, match="steps"):
        build_model(tmp_path / "x", quick=True, steps=0)


def test_cli_info_and_build(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--json", "lm", "info"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["parameters"] == info["manifest"]["parameters"]
    assert info["config"]["num_key_value_heads"] < info["config"]["num_attention_heads"]
    out = tmp_path / "m"
    args = ["--json", "lm", "build", "--quick", "--steps", "2", "--seed", "3", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["seed"] == 3 and (out / "manifest.json").is_file()
    result = runner.invoke(app, ["lm", "info", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output
