"""Activation memory: build, store (safetensors + manifest), load checks, tiered store with
prefix keys, and reuse in generation equal to full recompute, on a tiny real Llama (GQA)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface, LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from engram.activation import (
    FORMAT_VERSION,
    KVCorruptError,
    KVFormatTooNewError,
    KVModelMismatchError,
    KVStore,
    build_kv,
    continuation_logits,
    generate,
    load_block,
    model_fingerprint,
    save_block,
)
from engram.activation.block import KVBlock
from engram.activation.layers import DenseLayer
from engram.errors import NotFoundError, ValidationError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_llama(seed: int = 0, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA: two query heads per KV head
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_llama()


def ids(n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 96, (n,), generator=g).tolist()


def full_generate(model: LlamaForCausalLM, prompt: list[int], n: int) -> list[int]:
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False
        )
    return out[0, len(prompt) :].tolist()


def test_reused_prefix_generates_token_for_token_like_recompute(
    model: LlamaForCausalLM, tmp_path: Path
) -> None:
    prefix, question = ids(300, 1), ids(12, 2)
    store = KVStore(tmp_path / "kv", ram_budget_bytes=0)  # nothing in RAM: through the disk
    key = store.put(build_kv(model, prefix))
    block = store.get(key, model_fingerprint(model))
    assert store.counts["disk_hits"] == 1
    expected = full_generate(model, prefix + question, 24)
    assert generate(model, block, prefix + question, 24) == expected
    # the stored cache is not consumed: a second question reuses it again
    other = ids(7, 3)
    assert generate(model, block, prefix + other, 10) == full_generate(model, prefix + other, 10)


def test_reused_logits_equal_recompute(model: LlamaForCausalLM) -> None:
    prefix, tail = ids(120, 4), ids(20, 5)
    block = build_kv(model, prefix)
    with torch.no_grad():
        full = model(torch.tensor([prefix + tail])).logits[0, len(prefix) :]
    torch.testing.assert_close(continuation_logits(model, block, tail), full, atol=1e-5, rtol=1e-4)


def test_round_trip_is_exact_and_manifest_is_complete(
    model: LlamaForCausalLM, tmp_path: Path
) -> None:
    block = build_kv(model, ids(50, 6), meta={"owner": "user:alice"})
    save_block(block, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["token_ids"] == block.token_ids
    assert manifest["model_fingerprint"] == model_fingerprint(model)
    assert manifest["dtype"] == "float32" and manifest["method"] == []
    assert manifest["meta"] == {"owner": "user:alice"}
    assert [layer["kept"] for layer in manifest["layers"]] == [50, 50]
    loaded = load_block(tmp_path / "b", model_fingerprint(model))
    for a, b in zip(block.kv(), loaded.kv(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(loaded.layers[0].positions[0], torch.arange(50, dtype=torch.int32))


def test_data_file_is_safetensors_not_pickle(model: LlamaForCausalLM, tmp_path: Path) -> None:
    save_block(build_kv(model, ids(20, 7)), tmp_path / "b")
    raw = (tmp_path / "b" / "kv.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert header["layers.0.k"]["dtype"] == "F32" and header["layers.0.k"]["shape"] == [2, 20, 16]
    assert b"\x80\x04" not in raw[:2]  # no pickle protocol marker


def test_load_refuses_another_model(model: LlamaForCausalLM, tmp_path: Path) -> None:
    save_block(build_kv(model, ids(20, 8)), tmp_path / "b")
    other = tiny_llama(seed=1)
    with pytest.raises(KVModelMismatchError, match="built for model"):
        load_block(tmp_path / "b", model_fingerprint(other))
    # built from token ids: no tokenizer to check against
    assert load_block(tmp_path / "b", model_fingerprint(model), "f" * 64).tokenizer_hash is None
    block = build_kv(model, ids(20, 8))
    block.tokenizer_hash = "a" * 64
    save_block(block, tmp_path / "t")
    with pytest.raises(KVModelMismatchError, match="tokenizer"):
        load_block(tmp_path / "t", model_fingerprint(model), "b" * 64)


def test_load_refuses_corrupt_files(model: LlamaForCausalLM, tmp_path: Path) -> None:
    save_block(build_kv(model, ids(20, 9)), tmp_path / "b")
    data = tmp_path / "b" / "kv.safetensors"
    raw = bytearray(data.read_bytes())
    raw[-3] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(KVCorruptError, match="checksum"):
        load_block(tmp_path / "b")
    data.unlink()
    with pytest.raises(KVCorruptError, match="unreadable"):
        load_block(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text('{"format": "engram-kv", "format_version": 1}')
    with pytest.raises(KVCorruptError, match="lacks model_fingerprint"):
        load_block(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text("{not json")
    with pytest.raises(KVCorruptError, match="manifest"):
        load_block(tmp_path / "b")
    with pytest.raises(KVCorruptError, match="no manifest"):
        load_block(tmp_path / "missing")


def test_load_refuses_newer_format(model: LlamaForCausalLM, tmp_path: Path) -> None:
    save_block(build_kv(model, ids(20, 10)), tmp_path / "b")
    path = tmp_path / "b" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(KVFormatTooNewError, match="upgrade Engram"):
        load_block(tmp_path / "b")


def test_prompt_must_start_with_the_block(model: LlamaForCausalLM) -> None:
    block = build_kv(model, ids(30, 11))
    with pytest.raises(ValidationError, match="start with"):
        generate(model, block, ids(40, 12), 2)
    with pytest.raises(ValidationError, match="at least 2 tokens"):
        build_kv(model, [5])
    with pytest.raises(ValidationError, match="tokenizer"):
        build_kv(model, "text without a tokenizer")


def test_store_finds_the_longest_stored_prefix(model: LlamaForCausalLM, tmp_path: Path) -> None:
    store = KVStore(tmp_path / "kv", chunk=16)
    base = ids(200, 13)
    short, long_ = build_kv(model, base[:40]), build_kv(model, base[:100])
    store.put(short)
    store.put(long_)
    store.put(build_kv(model, ids(60, 14)))
    fp = model_fingerprint(model)
    found = store.longest_prefix(base[:150], fp)
    assert found is not None and found.n_tokens == 100
    diverging = base[:50] + ids(30, 15)
    found = store.longest_prefix(diverging, fp)
    assert found is not None and found.n_tokens == 40
    assert store.longest_prefix(base[:100], fp).n_tokens == 40  # strict prefix only
    assert store.longest_prefix(ids(150, 16), fp) is None
    assert store.longest_prefix(base, "0" * 64) is None
    assert store.longest_prefix(base, fp, method=[{"name": "kivi"}]) is None


def test_store_ram_tier_keeps_to_its_byte_budget(model: LlamaForCausalLM, tmp_path: Path) -> None:
    blocks = [build_kv(model, ids(40, 20 + i)) for i in range(3)]
    budget = blocks[0].nbytes * 2
    store = KVStore(tmp_path / "kv", ram_budget_bytes=budget)
    keys = [store.put(b) for b in blocks]
    stats = store.stats()
    assert stats["entries"] == 3 and stats["ram_entries"] == 2
    assert stats["ram_bytes"] <= budget
    store.get(keys[2])
    assert store.counts["ram_hits"] == 1
    store.get(keys[0])  # evicted from RAM (least recently used): read from disk
    assert store.counts["disk_hits"] == 1
    assert store.stats()["ram_entries"] == 2
    with pytest.raises(KVModelMismatchError):
        store.get(keys[2], model_fingerprint(tiny_llama(seed=3)))


def test_store_remove_and_listing(model: LlamaForCausalLM, tmp_path: Path) -> None:
    store = KVStore(tmp_path / "kv")
    key = store.put(build_kv(model, ids(30, 30), meta={"owner": "user:bob"}))
    (entry,) = store.entries()
    assert entry.key == key and entry.n_tokens == 30 and entry.meta["owner"] == "user:bob"
    assert store.stats()["disk_bytes"] > entry.nbytes
    store.remove(key)
    assert store.entries() == []
    with pytest.raises(NotFoundError):
        store.get(key)
    with pytest.raises(NotFoundError):
        store.remove("../etc")


def _masked_reference(
    model: LlamaForCausalLM, prefix: list[int], tail: list[int], kept: list[torch.Tensor]
) -> torch.Tensor:
    """Full recompute where, in layer l, the tail may not attend to prefix tokens outside
    kept[l]: what an evicted cache must reproduce exactly."""
    n, total = len(prefix), len(prefix) + len(tail)
    masks = {}
    for layer, keep in enumerate(kept):
        mask = torch.tril(torch.ones(total, total, dtype=torch.bool))
        dropped = torch.ones(n, dtype=torch.bool)
        dropped[keep] = False
        mask[n:, :n] &= ~dropped
        masks[layer] = mask[None, None]

    def attention(module, query, key, value, attention_mask, **kwargs):  # noqa: ANN001, ANN003
        return sdpa_attention_forward(module, query, key, value, masks[module.layer_idx], **kwargs)

    AttentionInterface.register("engram_test_masked", attention)
    AttentionMaskInterface.register("engram_test_masked", sdpa_mask)
    old = model.config._attn_implementation
    model.config._attn_implementation = "engram_test_masked"
    try:
        with torch.no_grad():
            return model(torch.tensor([prefix + tail])).logits[0, n:]
    finally:
        model.config._attn_implementation = old


@pytest.mark.parametrize("ragged", [False, True], ids=["even", "ragged"])
def test_evicted_cache_keeps_true_positions(model: LlamaForCausalLM, ragged: bool) -> None:
    """Dropped entries shift nothing: RoPE positions of new tokens stay the prompt's, and
    layers of different lengths (per-layer budgets) share one mask correctly."""
    prefix, tail = ids(80, 40), ids(10, 41)
    full = build_kv(model, prefix)
    kept = [torch.tensor([0, 1, 2, 3, *range(50, 80)]), torch.tensor([0, 1, *range(60, 80)])]
    if not ragged:
        kept[1] = kept[0]
    layers = []
    for layer, keep in zip(full.layers, kept, strict=True):
        assert isinstance(layer, DenseLayer)
        layers.append(layer.take(keep.expand(2, -1)))
    evicted = KVBlock(layers, full.token_ids, full.model_fingerprint, None, full.dtype)
    got = continuation_logits(model, evicted, tail)
    torch.testing.assert_close(
        got, _masked_reference(model, prefix, tail, kept), atol=1e-4, rtol=1e-4
    )
    # generation runs on it too, and differs from the full cache's (something was dropped)
    assert len(generate(model, evicted, prefix + tail, 5)) == 5


@pytest.fixture(scope="module")
def project_lm() -> tuple[object, object]:
    from engram.lm import default_model_path, load_model

    if not (default_model_path() / "config.json").is_file():
        pytest.skip("the packaged Engram LM is not built (engram lm build)")
    return load_model(None)


def test_project_lm_reuses_a_memory_block_exactly(project_lm: tuple[object, object]) -> None:
    """On the project LM and real text: reuse == recompute token for token, and a 4-bit KIVI
    cache stays close to the full one."""
    from engram.activation import parse_method

    model, tokenizer = project_lm
    memory = (
        "Session 1 (March 3, 2021)\nMaya: Hi Tomas! Guess what, I adopted a greyhound named "
        "Pixel.\nTomas: That is wonderful, Maya! Tell me more.\nThe colour of the north gate "
        "is teal. The code of the blue locker is KX42."
    )
    question = tokenizer("\nQ: What is the code of the blue locker? A:", add_special_tokens=False)[
        "input_ids"
    ]
    block = build_kv(model, memory, tokenizer)
    assert block.tokenizer_hash is not None
    prompt = block.token_ids + question
    assert generate(model, block, prompt, 12) == full_generate(model, prompt, 12)
    quantized = build_kv(model, memory, tokenizer, parse_method("kivi:bits=4,group=32,residual=16"))
    full = continuation_logits(model, block, question)
    approx = continuation_logits(model, quantized, question)
    kl = torch.nn.functional.kl_div(
        approx.log_softmax(-1), full.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    assert float(kl) < 0.02
    assert quantized.nbytes < 0.75 * block.fp16_nbytes  # short block: a large fp16 residual
