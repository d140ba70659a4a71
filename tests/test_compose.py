"""KV blocks that compose (engram.activation.compose) on the packaged tiny LM: keys moved
to new positions exactly, full recompute equal to a full prefill, partial recompute closer
to it than none, and what cannot compose refused."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engram.activation.block import KVBlock
from engram.activation.build import build_kv
from engram.activation.compose import build_segment, composable, compose
from engram.activation.compress import parse_method
from engram.activation.rope import shift_keys
from engram.errors import ValidationError
from engram.lm.checkpoint import default_model_path

LINES = [
    "- Maya adopted a greyhound named Pixel last spring.\n",
    "- Tom plays the cello on Sundays with his cousin.\n",
    "- The wifi password is sunflower42, said Maya.\n",
    "- Maya lives in Lisbon near the old tram line.\n",
]


@pytest.fixture(scope="module")
def lm() -> tuple[Any, Any]:
    path = default_model_path()
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def _parts(lm: tuple[Any, Any]) -> tuple[KVBlock, list[KVBlock], KVBlock]:
    """(head block, segment blocks built after the head alone, full prefill of it all)."""
    model, tokenizer = lm
    head_ids = tokenizer("Answer from the memories.\nMemories:\n")["input_ids"]
    segments = [tokenizer(line, add_special_tokens=False)["input_ids"] for line in LINES]
    head = build_kv(model, head_ids, tokenizer)
    blocks = [build_segment(model, head, ids) for ids in segments]
    full = build_kv(model, head_ids + [t for ids in segments for t in ids], tokenizer)
    return head, blocks, full


def _error(block: KVBlock, full: KVBlock, layer: int) -> float:
    (k, v), (fk, fv) = block.layers[layer].dense(torch.float32), full.layers[layer].dense(
        torch.float32
    )
    return float(torch.maximum((k - fk).abs().max(), (v - fv).abs().max()))


def test_rotating_a_key_by_d_positions_equals_computing_it_there(lm: tuple[Any, Any]) -> None:
    model, _ = lm
    head, blocks, full = _parts(lm)
    composed, recomputed = compose(model, head, blocks, share=0.0)
    assert recomputed == 0 and composed.token_ids == full.token_ids
    # layer 0 sees only a token and its position: moved keys must equal the full prefill's
    assert _error(composed, full, 0) < 1e-4
    # without the rotation they would not
    inv_freq = model.model.rotary_emb.inv_freq
    k = blocks[3].layers[0].dense(torch.float32)[0]
    assert not torch.allclose(k, shift_keys(k, torch.tensor(7), inv_freq), atol=1e-3)


def test_recomputing_every_memory_token_equals_a_full_prefill(lm: tuple[Any, Any]) -> None:
    model, _ = lm
    head, blocks, full = _parts(lm)
    composed, recomputed = compose(model, head, blocks, share=1.0)
    assert recomputed == full.n_tokens - head.n_tokens
    assert max(_error(composed, full, i) for i in range(len(full.layers))) < 1e-4


def test_recomputing_the_most_deviating_tokens_brings_the_cache_closer(
    lm: tuple[Any, Any],
) -> None:
    model, _ = lm
    head, blocks, full = _parts(lm)
    last = len(full.layers) - 1
    none = _error(compose(model, head, blocks, share=0.0)[0], full, last)
    part = _error(compose(model, head, blocks, share=0.5)[0], full, last)
    assert none > 1e-2  # segments computed apart do miss each other
    assert part < none


def test_evicting_methods_do_not_compose_and_bad_shares_are_refused(
    lm: tuple[Any, Any],
) -> None:
    model, _ = lm
    head, blocks, _ = _parts(lm)
    assert composable(parse_method("snapkv:keep=0.5+kivi:bits=4")) is None
    kivi = parse_method("kivi:bits=4")
    assert composable(kivi) is kivi and composable(None) is None
    with pytest.raises(ValidationError, match=r"within \[0, 1\], got 1.5"):
        compose(model, head, blocks, share=1.5)
    evicted = parse_method("streamingllm:keep=0.5")
    assert evicted is not None
    with pytest.raises(ValidationError, match="only blocks that keep every token compose"):
        compose(model, head, [evicted.compress(blocks[0], None)], share=0.0)
