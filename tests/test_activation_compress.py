"""Every registered KV compression method on a tiny real Llama: shapes, bytes, budgets,
round trips through disk, composition, and quality sanity against the full cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from engram.activation import build_kv, continuation_logits, generate, load_block, save_block
from engram.activation.block import KVBlock
from engram.activation.compress import COMPRESSORS, describe, parse_method
from engram.activation.compress.prefixkv import layer_budgets
from engram.activation.layers import DenseLayer, QuantizedLayer
from engram.activation.quant import dequantize, hadamard, pack, quantize, unpack
from engram.errors import ValidationError

N = 160  # prefix tokens
Prompt = tuple[list[int], list[int]]
# Small groups and windows so a 160-token block exercises every branch.
SPECS = {
    "fp16": "fp16",
    "kivi": "kivi:bits=4,group=16,residual=16",
    "rotatekv": "rotatekv:bits=2,group=16,residual=16,sinks=4",
    "streamingllm": "streamingllm:keep=0.5,sinks=4",
    "knorm": "knorm:keep=0.5",
    "snapkv": "snapkv:keep=0.5,window=16",
    "windowkv": "windowkv:keep=0.5,window=16,span=8",
    "prefixkv": "prefixkv:keep=0.5,window=16",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def prompt() -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(7)
    return torch.randint(3, 96, (N,), generator=g).tolist(), torch.randint(
        3, 96, (24,), generator=g
    ).tolist()


@pytest.fixture(scope="module")
def reference(model: LlamaForCausalLM, prompt: tuple[list[int], list[int]]) -> torch.Tensor:
    prefix, tail = prompt
    return continuation_logits(model, build_kv(model, prefix), tail)


def kl(logits: torch.Tensor, reference: torch.Tensor) -> float:
    return float(
        F.kl_div(
            logits.log_softmax(-1),
            reference.log_softmax(-1),
            log_target=True,
            reduction="batchmean",
        )
    )


def test_every_registered_method_is_covered() -> None:
    assert set(SPECS) == set(COMPRESSORS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_method_round_trips_and_keeps_its_invariants(
    name: str,
    model: LlamaForCausalLM,
    prompt: tuple[list[int], list[int]],
    reference: torch.Tensor,
    tmp_path: Path,
) -> None:
    prefix, tail = prompt
    method = parse_method(SPECS[name])
    block = build_kv(model, prefix, compressor=method)
    assert block.method_name == name
    assert parse_method(describe(method)).spec() == method.spec()  # the spec string round-trips
    fp16 = build_kv(model, prefix, compressor=parse_method("fp16"))
    assert block.fp16_nbytes == fp16.nbytes == fp16.fp16_nbytes
    assert block.nbytes <= fp16.nbytes
    for layer in block.layers:
        pos = layer.positions
        assert pos.shape[0] == 2 and torch.all(pos[:, 1:] > pos[:, :-1])  # sorted, unique
        assert int(pos.max()) < N and layer.head_dim == 32
    keys, values = block.kv()[0]
    assert keys.shape == values.shape == (1, 2, block.layers[0].tokens, 32)
    save_block(block, tmp_path / name)
    loaded = load_block(tmp_path / name)
    assert loaded.method == block.method and loaded.nbytes == block.nbytes
    for a, b in zip(block.kv(), loaded.kv(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    logits = continuation_logits(model, loaded, tail)
    assert torch.isfinite(logits).all()
    assert kl(logits, reference) < 0.05  # sanity: the model still reads the block
    assert len(generate(model, loaded, prefix + tail, 3)) == 3


def test_kivi_stores_packed_low_bit_codes(
    model: LlamaForCausalLM, prompt: Prompt, reference: torch.Tensor
) -> None:
    prefix, tail = prompt
    sizes, errors = {}, {}
    for bits in (2, 4, 8):
        block = build_kv(
            model, prefix, compressor=parse_method(f"kivi:bits={bits},group=16,residual=16")
        )
        layer = block.layers[0]
        assert isinstance(layer, QuantizedLayer)
        middle = layer.qkeys.shape[0] * layer.qkeys.shape[1] * layer.qkeys.shape[2]
        assert layer.qkeys.shape[1] == 144  # 160 - 16 residual, a multiple of the group
        assert layer.qkeys.packed.dtype == torch.uint8
        assert layer.qkeys.packed.numel() == middle * bits // 8
        assert layer.qkeys.scale.numel() == middle // 16  # one per 16 tokens per channel
        assert layer.qvalues.scale.numel() == middle // 16  # one per 16 channels per token
        sizes[bits], errors[bits] = (
            block.nbytes,
            kl(continuation_logits(model, block, tail), reference),
        )
    assert sizes[2] < sizes[4] < sizes[8]
    assert errors[8] < errors[4] < errors[2]
    assert errors[4] < 1e-3


def test_kivi_keeps_the_residual_window_in_float16(model: LlamaForCausalLM, prompt: Prompt) -> None:
    full = build_kv(model, prompt[0])
    block = build_kv(model, prompt[0], compressor=parse_method("kivi:bits=2,group=32,residual=20"))
    layer = block.layers[1]
    assert isinstance(layer, QuantizedLayer)
    # 160 - 20 = 140 -> 128 quantized (4 groups of 32), 32 recent entries in float16
    assert layer.residual.tokens == 32 and layer.qkeys.shape[1] == 128
    dense = full.layers[1]
    assert isinstance(dense, DenseLayer)
    assert torch.equal(layer.residual.keys, dense.keys[:, -32:].half())


def test_quantization_error_is_within_half_a_step() -> None:
    x = torch.randn(2, 64, 32)
    for axis in ("channel", "token"):
        q = quantize(x, 4, 16, axis)
        step = q.scale.float().max()
        assert (dequantize(q) - x).abs().max() <= step / 2 + 1e-2
    codes = torch.randint(0, 4, (101,), dtype=torch.uint8)
    assert torch.equal(unpack(pack(codes, 2), 2, 101), codes)
    assert pack(codes, 2).numel() == 26


def test_hadamard_rotation_is_orthonormal_and_spreads_outliers() -> None:
    for dim in (32, 48, 64):
        h = hadamard(dim)
        torch.testing.assert_close(h @ h.T, torch.eye(dim))
    x = torch.randn(1, 256, 64) * 0.1
    x[..., 5] = 20.0  # one outlier channel, as keys have
    assert (x @ hadamard(64)).abs().max() < x.abs().max() / 4


def test_rotatekv_keeps_sinks_in_float16_and_decodes_close(
    model: LlamaForCausalLM, prompt: Prompt
) -> None:
    full = build_kv(model, prompt[0])
    block = build_kv(model, prompt[0], compressor=parse_method("rotatekv:bits=4,group=16,sinks=4"))
    layer, dense = block.layers[0], full.layers[0]
    assert isinstance(layer, QuantizedLayer) and isinstance(dense, DenseLayer)
    assert layer.rotated and layer.sinks.tokens == 4
    assert torch.equal(layer.sinks.keys, dense.keys[:, :4].half())
    keys, _ = layer.dense(torch.float32)
    assert (keys - dense.keys).abs().mean() < 0.1 * dense.keys.abs().mean()


def test_streamingllm_keeps_sinks_and_the_recent_window(
    model: LlamaForCausalLM, prompt: Prompt
) -> None:
    block = build_kv(model, prompt[0], compressor=parse_method("streamingllm:keep=0.25,sinks=4"))
    expected = [0, 1, 2, 3, *range(N - 36, N)]
    for layer in block.layers:
        assert layer.positions.tolist() == [expected, expected]


def test_knorm_drops_the_largest_keys(model: LlamaForCausalLM, prompt: Prompt) -> None:
    full = build_kv(model, prompt[0])
    block = build_kv(model, prompt[0], compressor=parse_method("knorm:keep=0.5"))
    dense = full.layers[0]
    assert isinstance(dense, DenseLayer)
    norms = dense.keys.norm(dim=-1)
    for head in range(2):
        kept = block.layers[0].positions[head].long()
        dropped = torch.ones(N, dtype=torch.bool)
        dropped[kept] = False
        assert norms[head, kept].max() <= norms[head, dropped].min()


def test_snapkv_keeps_the_observation_window_and_the_budget(
    model: LlamaForCausalLM, prompt
) -> None:
    block = build_kv(model, prompt[0], compressor=parse_method("snapkv:keep=0.25,window=16"))
    for layer in block.layers:
        assert layer.tokens == 40
        for head in layer.positions.tolist():
            assert head[-16:] == list(range(N - 16, N))


def test_windowkv_keeps_whole_windows(model: LlamaForCausalLM, prompt: Prompt) -> None:
    block = build_kv(
        model, prompt[0], compressor=parse_method("windowkv:keep=0.4,window=16,span=8")
    )
    for layer in block.layers:
        assert torch.equal(layer.positions[0], layer.positions[1])  # heads share windows
        outside = [p for p in layer.positions[0].tolist() if p < N - 16]
        windows = {p // 8 for p in outside}
        assert len(outside) == 64 - 16
        assert len(windows) <= len(outside) // 8 + 1  # whole windows (one may be cut)


def test_prefixkv_budgets_follow_attention_mass() -> None:
    peaked = torch.zeros(2, 100)
    peaked[:, :5] = 1.0  # all mass on 5 entries
    flat = torch.ones(2, 100)
    counts = layer_budgets([peaked, flat], total=60, floor=2)
    assert sum(counts) <= 60
    assert counts[0] <= 6 and counts[1] >= 50  # the flat layer gets the budget


def test_prefixkv_hits_the_total_budget_with_ragged_layers(
    model: LlamaForCausalLM, prompt, reference
) -> None:
    prefix, tail = prompt
    block = build_kv(model, prefix, compressor=parse_method("prefixkv:keep=0.3,window=16"))
    kept = [layer.tokens for layer in block.layers]
    assert sum(kept) <= round(0.3 * N) * 3 and sum(kept) >= round(0.3 * N) * 3 - 3 * 4
    assert min(kept) >= 16
    assert torch.isfinite(continuation_logits(model, block, tail)).all()


def test_composition_evicts_then_quantizes(model: LlamaForCausalLM, prompt: Prompt) -> None:
    evicted = build_kv(model, prompt[0], compressor=parse_method("snapkv:keep=0.5,window=16+fp16"))
    both = build_kv(
        model,
        prompt[0],
        compressor=parse_method("snapkv:keep=0.5,window=16+kivi:bits=2,group=16,residual=16"),
    )
    assert [s["name"] for s in both.method] == ["snapkv", "kivi"]
    assert both.method_name == "snapkv+kivi"
    assert both.nbytes < evicted.nbytes < evicted.fp16_nbytes
    assert both.layers[0].tokens == evicted.layers[0].tokens == 80
    with pytest.raises(ValidationError, match="quantization outermost"):
        build_kv(model, prompt[0], compressor=parse_method("kivi+snapkv"))


def test_bad_method_specs_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown KV compression method 'zip'"):
        parse_method("zip")
    with pytest.raises(ValidationError, match="bits"):
        parse_method("kivi:bits=3")
    with pytest.raises(ValidationError, match="keep"):
        parse_method("snapkv:keep=1.5")
    with pytest.raises(ValidationError, match="kivi"):
        parse_method("kivi:colour=blue")
    with pytest.raises(ValidationError, match="key=value"):
        parse_method("kivi:4")
    assert parse_method("none") is None


def test_block_accounting(model: LlamaForCausalLM, prompt: Prompt) -> None:
    block = build_kv(model, prompt[0])
    assert isinstance(block, KVBlock)
    assert block.nbytes == 3 * 2 * 2 * N * 32 * 4  # layers * (k, v) * heads * tokens * dim * fp32
    assert block.fp16_nbytes == block.nbytes // 2
