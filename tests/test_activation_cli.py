"""Activation memories of a cube: materialize chosen memories as a stored KV cache, and the
`engram kv build|ls|rm|stats` commands, with a tiny local checkpoint (model + tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from typer.testing import CliRunner

from engram import Memory
from engram.activation import KVStore, generate, materialize, model_fingerprint, parse_method
from engram.activation.memories import block_text, select_memories
from engram.cli import app
from engram.errors import ValidationError

TEXTS = [
    "I adopted a greyhound called Pixel last spring.",
    "We moved to Lisbon in May and love the light.",
    "My sister Ana teaches piano on Tuesdays.",
    "The marathon in October went better than expected.",
]
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and a byte-level BPE tokenizer saved as a transformers checkpoint."""
    path = tmp_path_factory.mktemp("tiny-lm")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXTS * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def add_texts(memory: Memory) -> list[str]:
    return [memory.add(text, user_id="alice")[0].id for text in TEXTS]


def test_select_memories_by_ids_recent_and_top(memory: Memory) -> None:
    ids = add_texts(memory)
    memory.add("Bob's memory", user_id="bob")
    assert [m.id for m in select_memories(memory, user_id="alice", ids=[ids[2], ids[0]])] == [
        ids[2],
        ids[0],
    ]
    assert [m.id for m in select_memories(memory, user_id="alice", recent=2)] == ids[2:]
    assert len(select_memories(memory, user_id="alice", top=3)) == 3
    with pytest.raises(ValidationError, match="exactly one"):
        select_memories(memory, user_id="alice", top=2, recent=2)
    with pytest.raises(ValidationError, match="at least 1"):
        select_memories(memory, user_id="alice", recent=0)


def test_materialize_stores_a_reusable_block(
    memory: Memory, checkpoint: Path, tmp_path: Path
) -> None:
    from engram.lm import load_model

    model, tokenizer = load_model(checkpoint)
    ids = add_texts(memory)
    store = KVStore(tmp_path / "kv")
    key, block = materialize(
        memory,
        store,
        model,
        tokenizer,
        user_id="alice",
        ids=ids[:2],
        compressor=parse_method("kivi:bits=4,group=8,residual=8"),
    )
    assert block.meta["memory_ids"] == ids[:2] and block.meta["owner"] == "user:alice"
    assert (
        block.token_ids
        == tokenizer(block_text(select_memories(memory, user_id="alice", ids=ids[:2])))["input_ids"]
    )
    loaded = store.get(key, model_fingerprint(model))
    assert loaded.method_name == "kivi" and loaded.n_tokens == block.n_tokens
    question = tokenizer(" Where do we live?", add_special_tokens=False)["input_ids"]
    assert len(generate(model, loaded, loaded.token_ids + question, 4)) == 4


def cli(home: Path, *args: str):  # noqa: ANN201
    return runner.invoke(app, ["--home", str(home), *args])


def cli_json(home: Path, *args: str):  # noqa: ANN201
    result = cli(home, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_kv_commands(tmp_path: Path, checkpoint: Path) -> None:
    home = tmp_path / "home"
    for text in TEXTS:
        assert cli(home, "add", text, "-u", "alice").exit_code == 0
    built = cli_json(
        home,
        "kv",
        "build",
        "-u",
        "alice",
        "--recent",
        "3",
        "--model",
        str(checkpoint),
        "--method",
        "snapkv:keep=0.5,window=4+kivi:bits=2,group=8,residual=8",
    )
    assert built["memories"] == 3 and built["method"] == "snapkv+kivi"
    assert built["bytes"] < built["fp16_bytes"] / 3
    assert (home / "kv" / built["key"] / "manifest.json").is_file()
    (entry,) = cli_json(home, "kv", "ls")
    assert entry["key"] == built["key"] and entry["meta"]["owner"] == "user:alice"
    assert len(entry["meta"]["memory_ids"]) == 3
    stats = cli_json(home, "kv", "stats")
    assert stats["entries"] == 1 and stats["stored_bytes"] == built["bytes"]
    human = cli(home, "kv", "ls")
    assert built["key"] in human.stdout
    assert cli_json(home, "kv", "rm", built["key"]) == {"key": built["key"], "deleted": True}
    assert cli_json(home, "kv", "ls") == []
    missing = cli(home, "--json", "kv", "rm", built["key"])
    assert missing.exit_code == 1 and json.loads(missing.stdout)["error"]["code"] == "not_found"
    bad = cli(
        home,
        "kv",
        "build",
        "-u",
        "alice",
        "--top",
        "2",
        "--model",
        str(checkpoint),
        "--method",
        "zip",
    )
    assert bad.exit_code == 2 and "unknown KV compression method" in bad.output
    no_model = cli(home, "kv", "build", "-u", "alice", "--top", "2", "--model", str(tmp_path))
    assert no_model.exit_code == 2 and "config.json" in no_model.output
